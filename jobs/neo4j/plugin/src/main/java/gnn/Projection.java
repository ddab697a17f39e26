package gnn;

/** An immutable in-heap copy of part of a dataset, held by {@link Projections}. */
interface Projection {
    /** Heap bytes of its arrays (what counts against the budget). */
    long bytes();

    /** Nodes it holds. */
    int nodes();
}
