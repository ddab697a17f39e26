package gnn;

import java.util.ArrayDeque;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Which dataset rows changed since a client last asked: what lets the trainer keep a feature cache.
 *
 * <p>{@link ProjectionInvalidator} publishes, after each commit, the dense ids of the dataset nodes the
 * transaction changed ({@link LiveAdjacency#beforeCommit}); gnn.rowChanges answers the ids published
 * after a client's version. Per database, an {@code epoch} (random, new whenever the database starts
 * being watched: a server restart, a database re-created by the offline import) tells a client that
 * its version means nothing here any more; a bounded log (the newest {@link #MAX_IDS} ids per dataset)
 * answers "incomplete" to a client too far behind. Either way the client drops all it holds.
 */
final class RowChanges {
    static final int MAX_IDS = 1 << 20;

    private static final class Log {
        final ArrayDeque<long[]> batches = new ArrayDeque<>();
        final ArrayDeque<Long> versions = new ArrayDeque<>();
        long version;
        long floor;  // changes at or below this version are forgotten
        long held;
    }

    private static final class DatabaseLogs {
        final long epoch = ThreadLocalRandom.current().nextLong(1, Long.MAX_VALUE);
        final ConcurrentHashMap<String, Log> logs = new ConcurrentHashMap<>();
    }

    private static final ConcurrentHashMap<String, DatabaseLogs> DATABASES = new ConcurrentHashMap<>();

    private RowChanges() {
    }

    static String key(String label, String idProp) {
        return label + "\u0000" + idProp;
    }

    static void watch(String database) {
        DATABASES.put(database, new DatabaseLogs());
    }

    static void unwatch(String database) {
        DATABASES.remove(database);
    }

    static void publish(String database, Map<String, long[]> changed) {
        DatabaseLogs db = DATABASES.get(database);
        if (db == null || changed == null) {
            return;
        }
        changed.forEach((key, ids) -> {
            Log log = db.logs.computeIfAbsent(key, k -> new Log());
            synchronized (log) {
                log.version++;
                log.batches.addLast(ids);
                log.versions.addLast(log.version);
                log.held += ids.length;
                while (log.held > MAX_IDS && log.batches.size() > 1) {
                    log.held -= log.batches.removeFirst().length;
                    log.floor = log.versions.removeFirst();
                }
            }
        });
    }

    /** One answer of gnn.rowChanges. */
    public static final class Result {
        /** False: writes to this database are not watched (the plugin's extension did not load); nothing is known. */
        public boolean watched;
        /** Changes the database's watch; a client's version of another epoch is void. */
        public long epoch;
        /** The newest version: pass it as {@code since} next time. */
        public long version;
        /** Little-endian int64 dense ids changed after {@code since} (repeats possible). */
        public byte[] ids;
        /** False when changes after {@code since} were forgotten (or since is of another epoch): drop everything. */
        public boolean complete;

        Result(boolean watched, long epoch, long version, byte[] ids, boolean complete) {
            this.watched = watched;
            this.epoch = epoch;
            this.version = version;
            this.ids = ids;
            this.complete = complete;
        }
    }

    static Result since(String database, String label, String idProp, long epoch, long since) {
        DatabaseLogs db = DATABASES.get(database);
        if (db == null) {
            return new Result(false, 0, 0, new byte[0], false);
        }
        Log log = db.logs.computeIfAbsent(key(label, idProp), k -> new Log());
        synchronized (log) {
            boolean sameEpoch = epoch == db.epoch;
            boolean complete = sameEpoch && since >= log.floor && since <= log.version;
            LongList ids = new LongList(16);
            if (complete) {
                var v = log.versions.iterator();
                for (long[] batch : log.batches) {
                    if (v.next() > since) {
                        for (long id : batch) {
                            ids.add(id);
                        }
                    }
                }
            }
            return new Result(true, db.epoch, log.version, ids.toLittleEndianBytes(), complete);
        }
    }
}
