package local.gnn.importer;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import org.neo4j.batchimport.api.BatchImporter;
import org.neo4j.batchimport.api.Configuration;
import org.neo4j.batchimport.api.IndexConfig;
import org.neo4j.batchimport.api.Monitor;
import org.neo4j.batchimport.api.input.Collector;
import org.neo4j.configuration.Config;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.internal.batchimport.DefaultAdditionalIds;
import org.neo4j.io.ByteUnit;
import org.neo4j.io.fs.DefaultFileSystemAbstraction;
import org.neo4j.io.layout.DatabaseLayout;
import org.neo4j.io.layout.Neo4jLayout;
import org.neo4j.io.layout.recordstorage.RecordDatabaseLayout;
import org.neo4j.io.pagecache.context.CursorContextFactory;
import org.neo4j.io.pagecache.tracing.PageCacheTracer;
import org.neo4j.kernel.impl.index.schema.IndexImporterFactoryImpl;
import org.neo4j.kernel.impl.scheduler.JobSchedulerFactory;
import org.neo4j.kernel.impl.transaction.log.files.TransactionLogInitializer;
import org.neo4j.logging.internal.NullLogService;
import org.neo4j.memory.EmptyMemoryTracker;
import org.neo4j.scheduler.JobScheduler;
import org.neo4j.storageengine.api.StorageEngineFactory;

/**
 * Offline import of one graph into an empty database of a stopped server:
 * <pre>
 *   java -cp 'lib/*:gnn-importer.jar' local.gnn.importer.BinaryImport --home=H --database=neo4j \
 *       --dir=D --nodes=N --relationships=E --threads=2 --max-off-heap-memory=2g \
 *       --label=L --rel-type=T --id=id --x=x --y=y --split=split --nbrs=nbrs \
 *       [--dense-node-threshold=K] [--wait-for-input=true] [--verbose=true]
 * </pre>
 * Same engine and stages as {@code neo4j-admin database import full} (it prints the same stage
 * report), but the input is the binary arrays of {@link BinaryInput}: no CSV to write, no
 * decimal text to parse for the byte[] properties, and the adjacency property goes in with
 * the nodes instead of a second online pass. Exit code 2 with a one-line message on bad input.
 */
public final class BinaryImport {
    private BinaryImport() {}

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = parse(argv);
        Path home = Path.of(require(args, "home"));
        BinaryInput.Names names = new BinaryInput.Names(require(args, "label"), require(args, "rel-type"),
                require(args, "id"), require(args, "x"), require(args, "y"), require(args, "split"),
                require(args, "nbrs"));
        Config.Builder builder = Config.newBuilder()
                .fromFileNoThrow(home.resolve("conf").resolve("neo4j.conf"))
                .set(GraphDatabaseSettings.neo4j_home, home);
        if (args.containsKey("dense-node-threshold")) {
            builder.set(GraphDatabaseSettings.dense_node_threshold,
                    Integer.parseInt(args.get("dense-node-threshold")));
        }
        Config config = builder.build();
        DatabaseLayout layout = RecordDatabaseLayout.of(Neo4jLayout.of(config), require(args, "database"));
        if (Files.exists(layout.databaseDirectory()) && !isEmptyDir(layout.databaseDirectory())) {
            usage(layout.databaseDirectory() + " exists: the import writes a new database; delete it first");
        }
        Configuration importConfig = configuration(Integer.parseInt(require(args, "threads")),
                ByteUnit.parse(require(args, "max-off-heap-memory")));
        try (DefaultFileSystemAbstraction fs = new DefaultFileSystemAbstraction();
                JobScheduler scheduler = JobSchedulerFactory.createInitialisedScheduler()) {
            BatchImporter importer = StorageEngineFactory.selectStorageEngine(config).batchImporter(
                    layout, fs, PageCacheTracer.NULL, importConfig, NullLogService.getInstance(), System.out,
                    Boolean.parseBoolean(args.getOrDefault("verbose", "false")), DefaultAdditionalIds.EMPTY, config,
                    Monitor.NO_MONITOR, scheduler, Collector.STRICT,
                    TransactionLogInitializer.getLogFilesInitializer(), new IndexImporterFactoryImpl(),
                    EmptyMemoryTracker.INSTANCE, CursorContextFactory.NULL_CONTEXT_FACTORY);
            if (Boolean.parseBoolean(args.getOrDefault("wait-for-input", "false"))) {
                awaitInput();
            }
            try (BinaryInput input = new BinaryInput(Path.of(require(args, "dir")), names,
                    Long.parseLong(require(args, "nodes")), Long.parseLong(require(args, "relationships")))) {
                importer.doImport(input);
            }
        } catch (IllegalArgumentException e) {
            usage(e.getMessage());
        }
    }

    /**
     * Blocks until stdin says the arrays are complete ("go"), so the JVM starts and loads its
     * classes while the arrays are still being written; end of input without it aborts.
     */
    private static void awaitInput() throws java.io.IOException {
        var in = new java.io.BufferedReader(new java.io.InputStreamReader(System.in,
                java.nio.charset.StandardCharsets.US_ASCII));
        String line = in.readLine();
        if (!"go".equals(line)) {
            usage("the arrays were not completed (the loader stopped before writing them all)");
        }
    }

    /**
     * Threads and memory as given. Only the label lookup index is built during the import:
     * neo4j-admin also builds the relationship type lookup index, a second pass over all
     * relationships that nothing of ours reads (the sampler reads the nbrs property, relationship
     * counts come from the counts store, which this import still builds).
     */
    private static Configuration configuration(int threads, long maxOffHeapMemory) {
        return new Configuration() {
            @Override
            public int maxNumberOfWorkerThreads() {
                return threads;
            }

            @Override
            public long maxOffHeapMemory() {
                return maxOffHeapMemory;
            }

            @Override
            public IndexConfig indexConfig() {
                return IndexConfig.create().withLabelIndex();
            }
        };
    }

    private static Map<String, String> parse(String[] argv) {
        Map<String, String> args = new HashMap<>();
        for (String arg : argv) {
            int eq = arg.indexOf('=');
            if (!arg.startsWith("--") || eq < 0) {
                usage("expected --name=value, got " + arg);
            }
            args.put(arg.substring(2, eq), arg.substring(eq + 1));
        }
        return args;
    }

    private static String require(Map<String, String> args, String name) {
        String value = args.get(name);
        if (value == null || value.isEmpty()) {
            usage("missing --" + name + "=...");
        }
        return value;
    }

    private static boolean isEmptyDir(Path dir) throws java.io.IOException {
        try (var entries = Files.list(dir)) {
            return entries.findAny().isEmpty();
        }
    }

    private static void usage(String message) {
        System.err.println("error: " + message);
        System.exit(2);
    }
}
