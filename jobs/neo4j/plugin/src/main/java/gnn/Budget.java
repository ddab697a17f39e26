package gnn;

/** Heap bytes a projection build may use; charged as arrays are allocated, so a build too big stops early. */
final class Budget {
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

    /** Bytes of a budget given in MiB (callers pass projectionMb; negative = none). */
    static long mebibytes(double mb) {
        return (long) (Math.max(0, mb) * (1 << 20));
    }

    long used() {
        return used;
    }
}
