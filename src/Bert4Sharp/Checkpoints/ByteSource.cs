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

    /// <summary>
    /// Maps a file into memory (read-only). Reads become copies out of the mapping, and
    /// <see cref="TryGetSpan"/> gives zero-copy access to any range.
    /// </summary>
    public static ByteSource MapFile(string path) => new MappedByteSource(path);

    /// <summary>Zero-copy view of a range, for sources that are mapped or in memory; false otherwise.</summary>
    public virtual bool TryGetSpan(long offset, int count, out ReadOnlySpan<byte> span)
    {
        span = default;
        return false;
    }

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

    sealed unsafe class MappedByteSource : ByteSource
    {
        readonly System.IO.MemoryMappedFiles.MemoryMappedFile? file;
        readonly System.IO.MemoryMappedFiles.MemoryMappedViewAccessor? view;
        readonly byte* pointer;

        public MappedByteSource(string path)
        {
            Name = path;
            Length = new FileInfo(path).Length;
            if (Length == 0) return;   // an empty file cannot be mapped; every read is out of range anyway
            file = System.IO.MemoryMappedFiles.MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, System.IO.MemoryMappedFiles.MemoryMappedFileAccess.Read);
            view = file.CreateViewAccessor(0, 0, System.IO.MemoryMappedFiles.MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            pointer = p + view.PointerOffset;
        }

        public override string Name { get; }
        public override long Length { get; }

        protected override void ReadCore(long offset, Span<byte> destination) =>
            new ReadOnlySpan<byte>(pointer + offset, destination.Length).CopyTo(destination);

        public override bool TryGetSpan(long offset, int count, out ReadOnlySpan<byte> span)
        {
            span = default;
            if (offset < 0 || count < 0 || offset > Length - count) return false;
            span = new ReadOnlySpan<byte>(pointer + offset, count);
            return true;
        }

        public override void Dispose()
        {
            if (view is not null)
            {
                view.SafeMemoryMappedViewHandle.ReleasePointer();
                view.Dispose();
            }
            file?.Dispose();
            base.Dispose();
        }
    }

    sealed class MemoryByteSource(ReadOnlyMemory<byte> data, string name) : ByteSource
    {
        public override string Name { get; } = name;
        public override long Length => data.Length;
        protected override void ReadCore(long offset, Span<byte> destination) =>
            data.Span.Slice((int)offset, destination.Length).CopyTo(destination);

        public override bool TryGetSpan(long offset, int count, out ReadOnlySpan<byte> span)
        {
            span = default;
            if (offset < 0 || count < 0 || offset > Length - count) return false;
            span = data.Span.Slice((int)offset, count);
            return true;
        }
    }
}
