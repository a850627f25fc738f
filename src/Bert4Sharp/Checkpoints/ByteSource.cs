namespace Bert4Sharp.Checkpoints;

using Microsoft.Win32.SafeHandles;

/// <summary>Random-access bytes of a checkpoint file: a file on disk or a buffer in memory.</summary>
public abstract class ByteSource : IDisposable
{
    /// <summary>Path or label used in error messages.</summary>
    public abstract string Name { get; }

    /// <summary>Length in bytes.</summary>
    public abstract long Length { get; }

    /// <summary>Reads exactly <c>destination.Length</c> bytes at <paramref name="offset"/>.</summary>
    /// <exception cref="CheckpointFormatException">The range lies outside the source.</exception>
    public void Read(long offset, Span<byte> destination, string? entry = null)
    {
        if (offset < 0 || offset > Length || destination.Length > Length - offset)
            throw new CheckpointFormatException(Name, entry, $"needs bytes {offset}..{offset + destination.Length} but the file has {Length}");
        ReadCore(offset, destination);
    }

    /// <summary>Reads <paramref name="count"/> bytes at <paramref name="offset"/> into a new array.</summary>
    public byte[] ReadArray(long offset, long count, string? entry = null)
    {
        if (count < 0 || offset < 0 || offset > Length || count > Length - offset)
            throw new CheckpointFormatException(Name, entry, $"needs {count} bytes at {offset} but the file has {Length}");
        var b = GC.AllocateUninitializedArray<byte>(checked((int)count));
        ReadCore(offset, b);
        return b;
    }

    /// <summary>Implementation of <see cref="Read"/> once the range is known to be valid.</summary>
    protected abstract void ReadCore(long offset, Span<byte> destination);

    /// <summary>Opens a file for random access.</summary>
    public static ByteSource OpenFile(string path) => new FileByteSource(path);

    /// <summary>Wraps a buffer (tests, fuzzing, in-memory downloads).</summary>
    public static ByteSource FromMemory(ReadOnlyMemory<byte> data, string name) => new MemoryByteSource(data, name);

    /// <inheritdoc/>
    public virtual void Dispose() => GC.SuppressFinalize(this);

    sealed class FileByteSource : ByteSource
    {
        readonly SafeFileHandle handle;
        public FileByteSource(string path)
        {
            Name = path;
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            Length = RandomAccess.GetLength(handle);
        }
        public override string Name { get; }
        public override long Length { get; }
        protected override void ReadCore(long offset, Span<byte> destination)
        {
            while (!destination.IsEmpty)
            {
                int n = RandomAccess.Read(handle, destination, offset);
                if (n <= 0) throw new CheckpointFormatException(Name, null, $"the file ended at {offset} (it shrank while being read)");
                destination = destination[n..];
                offset += n;
            }
        }
        public override void Dispose() { handle.Dispose(); base.Dispose(); }
    }

    sealed class MemoryByteSource(ReadOnlyMemory<byte> data, string name) : ByteSource
    {
        public override string Name { get; } = name;
        public override long Length => data.Length;
        protected override void ReadCore(long offset, Span<byte> destination) =>
            data.Span.Slice((int)offset, destination.Length).CopyTo(destination);
    }
}
