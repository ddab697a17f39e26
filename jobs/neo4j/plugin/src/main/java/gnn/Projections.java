package gnn;

import java.util.Comparator;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;

import org.neo4j.logging.Log;

/**
 * Dataset projections in the server heap (what GDS does): built lazily by the first call that
 * passes a budget, shared by all later calls and ranks, and never stale.
 *
 * <p>Why never stale: {@link ProjectionInvalidator} sees every transaction that writes data to a
 * database, before its changes are applied ({@link #writeStarts}) and after ({@link #writeEnds}).
 * Both bump the database's version and drop its projections. A projection is used only while the
 * version it was built at is current and no write is committing; a build that overlapped a write
 * (version moved or a write in flight at its end) is thrown away. So a call that starts after a
 * write returned to its client reads the written data, as on the store path. A call in a
 * transaction with its own uncommitted writes, or on a database whose writes are not watched
 * (the extension did not load: plugin jar not on the server classpath), always reads the store.
 *
 * <p>Why build once: two ranks asking at once find the first one's entry and wait for its build.
 * Memory: a build stops as soon as it exceeds the caller's budget (the store path is then used
 * until the next write or a call with a larger budget), and after a build the least recently used
 * other projections are dropped until all fit in that budget.
 */
final class Projections {
    /** Builds one projection within a budget, or says why it cannot. */
    interface Builder<P extends Projection> {
        P build(Budget budget) throws NotProjectable;
    }

    private static final class DatabaseState {
        final AtomicLong version = new AtomicLong();
        final AtomicInteger committing = new AtomicInteger();
    }

    private static final class Entry {
        final String database;
        final long version;
        final long budget;
        final CompletableFuture<Projection> result = new CompletableFuture<>();
        volatile long lastUse = System.nanoTime();
        volatile String refusal;

        Entry(String database, long version, long budget) {
            this.database = database;
            this.version = version;
            this.budget = budget;
        }
    }

    private static final ConcurrentHashMap<String, DatabaseState> DATABASES = new ConcurrentHashMap<>();
    private static final ConcurrentHashMap<String, Entry> ENTRIES = new ConcurrentHashMap<>();
    private static final Set<String> WARNED = ConcurrentHashMap.newKeySet();

    private Projections() {
    }

    // -- called by ProjectionInvalidator --------------------------------------------------------
    static void watch(String database) {
        DATABASES.putIfAbsent(database, new DatabaseState());
    }

    static void unwatch(String database) {
        DATABASES.remove(database);
        drop(database);
    }

    static void writeStarts(String database) {
        onWrite(database, true);
    }

    static void writeEnds(String database) {
        onWrite(database, false);
    }

    /** Bumps the version; a write counts as committing from before the first bump to after the second. */
    private static void onWrite(String database, boolean starts) {
        DatabaseState st = DATABASES.get(database);
        if (st != null) {
            if (starts) {
                st.committing.incrementAndGet();
            }
            st.version.incrementAndGet();
            if (!starts) {
                st.committing.decrementAndGet();
            }
        }
        drop(database);
    }

    /** The database's write version (changes with every write), or -1: not watched, or a write is committing. */
    static long version(String database) {
        DatabaseState st = DATABASES.get(database);
        if (st == null || st.committing.get() > 0) {
            return -1;
        }
        long v = st.version.get();
        return st.committing.get() > 0 ? -1 : v;
    }

    private static void drop(String database) {
        ENTRIES.values().removeIf(e -> e.database.equals(database));
    }

    // -- called by the procedures ---------------------------------------------------------------
    /** Key of a projection: database, label and id property first (see {@link #drop}), then what it holds. */
    static String key(KernelGraph g, String... parts) {
        return String.join("\u0000", g.database, g.label, g.idProp, String.join("\u0000", parts));
    }

    /**
     * The projection {@code key} of {@code g}'s database, built by this call if needed, or null:
     * use the store (budget 0, not projectable within the budget, a write in flight, ...).
     */
    @SuppressWarnings("unchecked")
    static <P extends Projection> P get(String key, KernelGraph g, long budget, Log log, Builder<P> builder) {
        if (budget <= 0) {
            return null;
        }
        DatabaseState st = DATABASES.get(g.database);
        if (st == null) {
            if (WARNED.add(g.database)) {
                log.warn("gnn: writes to database %s are not watched (is gnn-procedures.jar on the server's"
                        + " classpath, i.e. in its plugins folder at start?); no projections, the store serves", g.database);
            }
            return null;
        }
        long version = st.version.get();
        if (st.committing.get() > 0 || g.hasLocalChanges()) {
            return null;
        }
        Entry e = ENTRIES.get(key);
        if (e != null && (e.version != version || (e.result.isDone() && e.refusal != null && budget > e.budget))) {
            ENTRIES.remove(key, e);  // stale, or refused under a smaller budget: try again
            e = null;
        }
        if (e == null) {
            Entry mine = new Entry(g.database, version, budget);
            e = ENTRIES.putIfAbsent(key, mine);
            if (e == null) {
                return build(key, mine, st, log, builder);
            }
        }
        Projection p;
        try {
            p = e.result.get();
        } catch (ExecutionException ex) {
            return null;  // the building call failed (and reported it)
        } catch (InterruptedException ex) {
            Thread.currentThread().interrupt();
            return null;
        }
        if (p == null || p.bytes() > budget || st.version.get() != e.version) {
            return null;
        }
        e.lastUse = System.nanoTime();
        return (P) p;
    }

    private static <P extends Projection> P build(String key, Entry mine, DatabaseState st, Log log, Builder<P> builder) {
        long t0 = System.nanoTime();
        P p;
        try {
            p = builder.build(new Budget(mine.budget));
        } catch (NotProjectable r) {
            mine.refusal = r.getMessage();
            mine.result.complete(null);
            log.info("gnn: %s not projected (%s); the store serves it", describe(key), r.getMessage());
            return null;
        } catch (RuntimeException | Error ex) {
            mine.result.completeExceptionally(ex);
            ENTRIES.remove(key, mine);
            throw ex;
        }
        mine.result.complete(p);
        if (st.version.get() != mine.version || st.committing.get() > 0) {
            ENTRIES.remove(key, mine);  // a write overlapped the build: neither keep nor use it
            return null;
        }
        log.info("gnn: projected %s: %d nodes, %d MiB in %d ms", describe(key), p.nodes(), p.bytes() >> 20,
                (System.nanoTime() - t0) / 1_000_000);
        evictOthers(key, mine.budget);
        return p;
    }

    /** Drops least recently used projections (not {@code keep}) until all fit in {@code budget}. */
    private static synchronized void evictOthers(String keep, long budget) {
        long total = ENTRIES.values().stream().mapToLong(Projections::bytesOf).sum();
        while (total > budget) {
            Map.Entry<String, Entry> oldest = ENTRIES.entrySet().stream()
                    .filter(x -> !x.getKey().equals(keep) && bytesOf(x.getValue()) > 0)
                    .min(Comparator.comparingLong(x -> x.getValue().lastUse)).orElse(null);
            if (oldest == null || !ENTRIES.remove(oldest.getKey(), oldest.getValue())) {
                return;
            }
            total -= bytesOf(oldest.getValue());
        }
    }

    private static long bytesOf(Entry e) {
        Projection p = e.result.getNow(null);
        return p == null ? 0 : p.bytes();
    }

    private static String describe(String key) {
        return key.replace('\u0000', '/');
    }

    /** One row of gnn.projections. */
    public static final class Info {
        public String key;
        public long nodes;
        public long bytes;
        public String state;

        Info(String key, Entry e) {
            Projection p = e.result.getNow(null);
            this.key = describe(key);
            this.nodes = p == null ? 0 : p.nodes();
            this.bytes = bytesOf(e);
            this.state = !e.result.isDone() ? "building" : p != null ? "ready" : "not projected: " + e.refusal;
        }
    }

    static Stream<Info> list() {
        return ENTRIES.entrySet().stream().map(x -> new Info(x.getKey(), x.getValue()));
    }
}
