package local.gnn.importer;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * One flat little-endian array file written by src/neo4jdb/load/bulk_import.py. Positional reads only, so the
 * importer's worker threads share one channel without locking, and files larger than 2 GiB
 * (a 250M-edge graph) need no memory mapping tricks.
 */
final class ArrayFile implements AutoCloseable {
    private final Path path;
    private final FileChannel channel;

    ArrayFile(Path path) throws IOException {
        this.path = path;
        this.channel = FileChannel.open(path, StandardOpenOption.READ);
    }

    long size() throws IOException {
        return channel.size();
    }

    /** Fails with the file name when its size does not match what the caller was told. */
    ArrayFile expectSize(long bytes) throws IOException {
        if (size() != bytes) {
            throw new IllegalArgumentException(path + " has " + size() + " bytes, expected " + bytes);
        }
        return this;
    }

    /** Bytes [from, to) as a little-endian buffer positioned at 0. */
    ByteBuffer read(long from, long to) throws IOException {
        long length = to - from;
        if (length < 0 || length > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException(path + ": cannot read " + length + " bytes at " + from + " in one chunk");
        }
        ByteBuffer buf = ByteBuffer.allocate((int) length).order(ByteOrder.LITTLE_ENDIAN);
        long pos = from;
        while (buf.hasRemaining()) {
            int n = channel.read(buf, pos);
            if (n < 0) {
                throw new IOException(path + " ends at " + pos + ", before byte " + to);
            }
            pos += n;
        }
        return buf.flip();
    }

    /** int64 elements [from, to). */
    long[] longs(long from, long to) throws IOException {
        long[] out = new long[(int) (to - from)];
        read(from * Long.BYTES, to * Long.BYTES).asLongBuffer().get(out);
        return out;
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}
