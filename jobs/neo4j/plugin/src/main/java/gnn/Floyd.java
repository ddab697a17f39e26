package gnn;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.BitSet;
import java.util.function.IntToLongFunction;

/** Floyd's subset sampling with the minstd generator, shared by both sampling procedures (one per call). */
final class Floyd {
    /** Park-Miller "minimal standard" modulus 2^31-1 and multiplier, as in src/graph_sampler.py. */
    static final long MINSTD_MODULUS = 2_147_483_647L;
    static final long MINSTD_MULTIPLIER = 48_271L;

    private final BitSet picked = new BitSet();
    private int[] picks = new int[0];

    /**
     * Samples every node of a frontier (references of {@code g}, -1 = unknown id) into {@code out};
     * returns the little-endian int64 count per node (-1 for unknown ids).
     */
    byte[] sampleFrontier(Topology g, long[] refs, IntToLongFunction state, long fanout, LongList out) {
        ByteBuffer counts = ByteBuffer.allocate(refs.length * Long.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < refs.length; i++) {
            counts.putLong(refs[i] < 0 ? -1L : sample(g, refs[i], state.applyAsLong(i), fanout, out));
        }
        return counts.array();
    }

    /** Appends min(fanout, degree) sampled neighbour ids of {@code ref} to {@code out}; returns the count. */
    private long sample(Topology g, long ref, long state, long fanout, LongList out) {
        int d = g.loadNeighbours(ref);
        if (fanout < 0 || d <= fanout) {
            for (int p = 0; p < d; p++) {
                out.add(g.neighbourId(p));
            }
            return d;
        }
        int k = (int) fanout;
        if (picks.length < k) {
            picks = new int[k];
        }
        // Floyd's algorithm: for j = d-k .. d-1 draw t in [0, j]; take t unless taken, else j.
        // Same arithmetic as the Cypher reduce() in src/graph_sampler.py: the state advances first.
        long r = state;
        for (int q = 0; q < k; q++) {
            long j = d - k + q;
            r = (r * MINSTD_MULTIPLIER) % MINSTD_MODULUS;
            int t = (int) (r % (j + 1));
            int p = picked.get(t) ? (int) j : t;
            picked.set(p);
            picks[q] = p;
        }
        for (int q = 0; q < k; q++) {
            picked.clear(picks[q]);
            out.add(g.neighbourId(picks[q]));
        }
        return k;
    }
}
