package gnn;

/** Heap bytes a projection build may use; charged as arrays are allocated, so a build too big stops early. */
final class Budget {
    /** Share of the maximum heap a projection budget may take when neo4j.conf sets no cap. */
    static final double DEFAULT_HEAP_SHARE = 0.5;

    private static volatile long capBytes = -1;  // server.gnn.projection_max_mb in bytes; -1: DEFAULT_HEAP_SHARE of the heap

    final long limit;
    private long used;

    Budget(long limit) {
        this.limit = limit;
    }

    void charge(long bytes, String what) throws NotProjectable {
        used += bytes;
        if (used > limit) {
            throw new NotProjectable("needs more than the budget of " + (limit >> 20) + " MiB (at " + what + ")");
        }
    }

    /** Set once at start by {@link ProjectionCap} from neo4j.conf; negative = the heap default. */
    static void setCapMebibytes(long mb) {
        capBytes = mb < 0 ? -1 : mb << 20;
    }

    /** The largest budget a call may ask for, in bytes. */
    static long cap() {
        long cap = capBytes;
        return cap >= 0 ? cap : (long) (Runtime.getRuntime().maxMemory() * DEFAULT_HEAP_SHARE);
    }

    /**
     * Bytes of a budget given in MiB (callers pass projectionMb; negative = none). A request above
     * the server's cap is refused: a budget beyond the heap would let a build exhaust it.
     */
    static long mebibytes(double mb) {
        long want = (long) (Math.max(0, mb) * (1 << 20));
        long cap = cap();
        if (want > cap || Double.isInfinite(mb)) {
            throw new IllegalArgumentException("projectionMb " + mb + " exceeds this server's projection cap of "
                    + (cap >> 20) + " MiB (server.gnn.projection_max_mb in neo4j.conf; default half the heap): ask for"
                    + " at most " + (cap >> 20) + " (--projection_mb) or raise the cap with the heap");
        }
        return want;
    }

    long used() {
        return used;
    }
}
