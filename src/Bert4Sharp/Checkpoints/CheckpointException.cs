namespace Bert4Sharp.Checkpoints;

/// <summary>
/// Base of every error a checkpoint reader or writer raises. <see cref="FilePath"/> and
/// <see cref="EntryName"/> say where; the message is one readable line that includes both.
/// </summary>
public class CheckpointException : IOException
{
    /// <summary>Creates the exception; the message is prefixed with the file and the entry.</summary>
    public CheckpointException(string filePath, string? entryName, string message, Exception? inner = null)
        : base(Format(filePath, entryName, message), inner)
    {
        FilePath = filePath;
        EntryName = entryName;
    }

    /// <summary>The file the problem was found in.</summary>
    public string FilePath { get; }

    /// <summary>The tensor, zip entry or record concerned, when there is one.</summary>
    public string? EntryName { get; }

    static string Format(string file, string? entry, string message) =>
        entry is null ? $"{file}: {message}" : $"{file} [{entry}]: {message}";
}

/// <summary>The file is not in the expected format or is structurally corrupt (bad magic, bad lengths, bad offsets).</summary>
public sealed class CheckpointFormatException(string filePath, string? entryName, string message, Exception? inner = null)
    : CheckpointException(filePath, entryName, message, inner);

/// <summary>Stored bytes do not match their checksum (TensorFlow masked CRC32C).</summary>
public sealed class CheckpointIntegrityException(string filePath, string? entryName, string message)
    : CheckpointException(filePath, entryName, message);

/// <summary>
/// A tensor is listed but its data cannot be read: the file is truncated before its bytes, or the
/// data shard that holds it is missing.
/// </summary>
public sealed class TensorDataUnavailableException(string filePath, string? entryName, string message)
    : CheckpointException(filePath, entryName, message);

/// <summary>A pickle asked for a global (class or function) outside the state-dict allow-list. Nothing was executed.</summary>
public sealed class UnsafePickleException(string filePath, string? entryName, string global)
    : CheckpointException(filePath, entryName, $"the pickle refers to '{global}', which is not allowed in a state dict; nothing was executed. Only tensors, storages, OrderedDict and plain containers are accepted.")
{
    /// <summary>The refused global, as module.name.</summary>
    public string Global { get; } = global;
}
