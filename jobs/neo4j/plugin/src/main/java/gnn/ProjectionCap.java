package gnn;

import static org.neo4j.configuration.SettingValueParsers.LONG;

import org.neo4j.configuration.Config;
import org.neo4j.configuration.Description;
import org.neo4j.configuration.SettingImpl;
import org.neo4j.configuration.SettingsDeclaration;
import org.neo4j.graphdb.config.Setting;
import org.neo4j.kernel.extension.ExtensionFactory;
import org.neo4j.kernel.extension.ExtensionType;
import org.neo4j.kernel.extension.context.ExtensionContext;
import org.neo4j.kernel.lifecycle.Lifecycle;
import org.neo4j.kernel.lifecycle.LifecycleAdapter;

/**
 * The server's cap on projection budgets: {@code server.gnn.projection_max_mb} in neo4j.conf.
 *
 * <p>Why on the server: {@code projectionMb} is a procedure argument any authenticated client
 * chooses, and a budget beyond the heap lets a build run the JVM out of memory (the server exits).
 * Calls asking for more than the cap are refused ({@link Budget#mebibytes}); without the setting
 * the cap is {@link Budget#DEFAULT_HEAP_SHARE} of the maximum heap. Declared as a setting (listed in
 * META-INF/services) so strict config validation accepts it; read once at start by this global
 * extension.
 */
public final class ProjectionCap extends ExtensionFactory<ProjectionCap.Dependencies> implements SettingsDeclaration {
    @Description("Largest projectionMb a gnn.* procedure call may ask for, in MiB (-1: half the maximum heap)")
    public static final Setting<Long> MAX_MB = SettingImpl.newBuilder("server.gnn.projection_max_mb", LONG, -1L).build();

    /** What the extension needs: the server's configuration. */
    public interface Dependencies {
        Config config();
    }

    public ProjectionCap() {
        super(ExtensionType.GLOBAL, "gnnProjectionCap");
    }

    @Override
    public Lifecycle newInstance(ExtensionContext context, Dependencies deps) {
        Long mb = deps.config().get(MAX_MB);
        Budget.setCapMebibytes(mb == null ? -1 : mb);
        return new LifecycleAdapter();
    }
}
