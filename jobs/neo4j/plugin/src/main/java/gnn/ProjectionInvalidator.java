package gnn;

import static org.neo4j.configuration.GraphDatabaseSettings.SYSTEM_DATABASE_NAME;

import java.util.Map;

import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.graphdb.Transaction;
import org.neo4j.graphdb.event.TransactionData;
import org.neo4j.graphdb.event.TransactionEventListener;
import org.neo4j.kernel.extension.ExtensionFactory;
import org.neo4j.kernel.extension.ExtensionType;
import org.neo4j.kernel.extension.context.ExtensionContext;
import org.neo4j.kernel.internal.GraphDatabaseAPI;
import org.neo4j.kernel.lifecycle.Lifecycle;
import org.neo4j.kernel.lifecycle.LifecycleAdapter;

/**
 * Tells {@link Projections} about every write, so no projection outlives the data it copied; keeps
 * the datasets' adjacency copies current inside each writing transaction ({@link LiveAdjacency}) and
 * publishes the rows it changed after the commit ({@link RowChanges}).
 *
 * <p>A database extension (listed in META-INF/services, loaded because the plugins folder is on
 * the server's classpath, as with the stock neo4j launcher): while a database runs, a
 * TransactionEventListener on it reports each transaction with data changes before its changes
 * are applied and after it committed or rolled back. Stopping or dropping the database forgets
 * its projections (a database re-created under the same name starts clean).
 */
public final class ProjectionInvalidator extends ExtensionFactory<ProjectionInvalidator.Dependencies> {
    /** What the extension needs from the database it runs in. */
    public interface Dependencies {
        GraphDatabaseAPI graphDatabaseAPI();

        DatabaseManagementService databaseManagementService();
    }

    public ProjectionInvalidator() {
        super(ExtensionType.DATABASE, "gnnProjectionInvalidator");
    }

    @Override
    public Lifecycle newInstance(ExtensionContext context, Dependencies deps) {
        String database = deps.graphDatabaseAPI().databaseName();
        if (SYSTEM_DATABASE_NAME.equals(database)) {
            return new LifecycleAdapter();  // holds no datasets, and takes no listeners
        }
        Listener listener = new Listener(database);
        return new LifecycleAdapter() {
            @Override
            public void start() {
                RowChanges.watch(database);
                deps.databaseManagementService().registerTransactionEventListener(database, listener);
                Projections.watch(database);
            }

            @Override
            public void stop() {
                Projections.unwatch(database);
                RowChanges.unwatch(database);
                deps.databaseManagementService().unregisterTransactionEventListener(database, listener);
            }
        };
    }

    /** What beforeCommit saw: it counted the write; the dataset rows it changed (null: none). */
    private record Seen(Map<String, long[]> rows) {
    }

    /** Brackets each writing transaction; a state says beforeCommit counted it. */
    private static final class Listener implements TransactionEventListener<Seen> {
        private final String database;

        Listener(String database) {
            this.database = database;
        }

        @Override
        public Seen beforeCommit(TransactionData data, Transaction tx, GraphDatabaseService db) {
            Projections.writeStarts(database);
            try {
                return new Seen(LiveAdjacency.beforeCommit(data, tx));
            } catch (RuntimeException | Error e) {
                Projections.writeEnds(database);  // afterRollback gets no state from a failed beforeCommit
                throw e;
            }
        }

        @Override
        public void afterCommit(TransactionData data, Seen seen, GraphDatabaseService db) {
            if (seen != null) {
                RowChanges.publish(database, seen.rows());
            }
            end(seen);
        }

        @Override
        public void afterRollback(TransactionData data, Seen seen, GraphDatabaseService db) {
            end(seen);
        }

        private void end(Seen seen) {
            if (seen != null) {
                Projections.writeEnds(database);
            }
        }
    }
}
