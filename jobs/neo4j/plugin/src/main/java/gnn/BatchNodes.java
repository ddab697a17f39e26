package gnn;

import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * The nodes one gnn.sampleHops batch has reached so far: each next frontier is the sampled
 * neighbours not seen before, so every sampled id is checked here (~300k per batch of 1024 seeds
 * on the 1M-node graph): this set is the sampler's inner loop.
 */
interface BatchNodes extends AutoCloseable {
    /** Returned by {@link #addIfNew} for an id already in the set. */
    long SEEN = -2;

    /** Adds {@code id}; returns {@link #SEEN} if it was there, else its reference (-1: no such node). */
    long addIfNew(long id);

    @Override
    default void close() {}

    /** Store topology: a hash map id -> reference, so each id costs one index lookup at most. */
    final class ById implements BatchNodes {
        private final Topology topology;
        private final LongLongMap refs;

        ById(Topology topology, int expected) {
            this.topology = topology;
            this.refs = new LongLongMap(expected);
        }

        @Override
        public long addIfNew(long id) {
            if (refs.containsKey(id)) {
                return SEEN;
            }
            long ref = topology.nodeRef(id);
            refs.put(id, ref);
            return ref;
        }
    }

    /**
     * Projection topology (references are slots 0..n-1): one stamp per slot, so a membership test
     * is one array read instead of a hash probe (measured: a third of the sampling time). Stamp
     * arrays (4 bytes per projected node) are reused across calls, one per concurrent call; a new
     * batch only bumps the stamp.
     */
    final class BySlot implements BatchNodes {
        private final Topology topology;
        private final Pool pool;
        private final Marks marks;

        BySlot(Topology topology, Pool pool) {
            this.topology = topology;
            this.pool = pool;
            this.marks = pool.take();
        }

        @Override
        public long addIfNew(long id) {
            long slot = topology.nodeRef(id);
            if (slot < 0) {
                return slot;
            }
            if (marks.stamps[(int) slot] == marks.stamp) {
                return SEEN;
            }
            marks.stamps[(int) slot] = marks.stamp;
            return slot;
        }

        @Override
        public void close() {
            pool.give(marks);
        }

        /** Stamp arrays of one projection, shared by its concurrent callers. */
        static final class Pool {
            private final int slots;
            private final ConcurrentLinkedQueue<Marks> free = new ConcurrentLinkedQueue<>();

            Pool(int slots) {
                this.slots = slots;
            }

            Marks take() {
                Marks m = free.poll();
                if (m == null) {
                    m = new Marks(new int[slots]);
                }
                if (++m.stamp == 0) {  // wrapped after 2^32 batches: old stamps could collide
                    java.util.Arrays.fill(m.stamps, 0);
                    m.stamp = 1;
                }
                return m;
            }

            void give(Marks m) {
                free.add(m);
            }
        }

        /** Slot stamps: a slot is in the current batch when its stamp equals {@code stamp}. */
        static final class Marks {
            final int[] stamps;
            int stamp;

            Marks(int[] stamps) {
                this.stamps = stamps;
            }
        }
    }
}
