// Runs `neo4j-admin dbms set-initial-password` with the password read from standard input.
// Why: the tool takes the password only as an argument, and a process's arguments are visible to
// every local user (ps, /proc/<pid>/cmdline). Here the argument exists only inside this JVM.
// Started by src/neo4jdb/local.py as `java -cp <neo4j lib>/* SetInitialPassword.java` (source launcher).
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;

public class SetInitialPassword {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String password = in.readLine();
        if (password == null || password.isEmpty()) {
            System.err.println("no password on standard input");
            System.exit(2);
        }
        // "--" ends the options: a generated password may start with "-".
        org.neo4j.cli.AdminTool.main(new String[] {"dbms", "set-initial-password", "--", password});
    }
}
