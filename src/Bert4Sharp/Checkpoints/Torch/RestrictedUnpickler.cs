namespace Bert4Sharp.Checkpoints.Torch;

using System.Buffers.Binary;
using System.Numerics;
using System.Text;

/// <summary>A global (module.name) seen by the unpickler; only allow-listed ones ever appear.</summary>
internal sealed record PickleGlobal(string Module, string Name)
{
    public string FullName => Module + "." + Name;
}

/// <summary>An ordered dict (plain dict or collections.OrderedDict).</summary>
internal sealed class PickleDict
{
    public readonly List<KeyValuePair<object?, object?>> Items = [];
}

/// <summary>A storage named by a persistent id: ('storage', type, key, location, numel[, view]).</summary>
internal sealed record StorageRef(TensorDType DType, string Key, string Location, long ElementCount, long ViewOffset);

/// <summary>What torch._utils._rebuild_tensor_v2 would build: a strided view into a storage.</summary>
internal sealed record TensorRef(StorageRef Storage, long StorageOffset, long[] Shape, long[] Stride);

/// <summary>
/// A pickle virtual machine that understands exactly what a PyTorch state dict needs and nothing
/// more. It never imports or calls anything: allowed globals are interpreted by name, every other
/// global is refused with <see cref="UnsafePickleException"/> the moment it is named.
/// </summary>
internal sealed class RestrictedUnpickler
{
    static readonly Dictionary<string, TensorDType> StorageTypes = new()
    {
        ["FloatStorage"] = TensorDType.F32, ["DoubleStorage"] = TensorDType.F64, ["HalfStorage"] = TensorDType.F16,
        ["BFloat16Storage"] = TensorDType.BF16, ["LongStorage"] = TensorDType.I64, ["IntStorage"] = TensorDType.I32,
        ["ShortStorage"] = TensorDType.I16, ["CharStorage"] = TensorDType.I8, ["ByteStorage"] = TensorDType.U8,
        ["BoolStorage"] = TensorDType.Bool,
    };

    static readonly HashSet<string> AllowedCallables =
    [
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
    ];

    sealed class Mark { public static readonly Mark Instance = new(); }

    /// <summary>Thrown instead of a format error when the buffer is only a prefix of the file and ran out.</summary>
    internal sealed class NeedMoreData : Exception;

    readonly byte[] data;
    readonly string file, entry;
    int pos;
    readonly List<object?> stack = [];
    readonly Dictionary<long, object?> memo = [];
    readonly Func<object?[], StorageRef>? persistentLoad;
    bool partial;

    RestrictedUnpickler(byte[] data, int start, string file, string entry, Func<object?[], StorageRef>? persistentLoad)
    {
        this.data = data;
        pos = start;
        this.file = file;
        this.entry = entry;
        this.persistentLoad = persistentLoad;
    }

    /// <summary>Runs one pickle from <paramref name="start"/>; returns the object and the offset just after STOP.</summary>
    /// <remarks>With <paramref name="partial"/>, running out of data throws <see cref="NeedMoreData"/>.</remarks>
    public static (object? Value, int End) Load(byte[] data, int start, string file, string entry, Func<object?[], StorageRef>? persistentLoad, bool partial = false)
    {
        var u = new RestrictedUnpickler(data, start, file, entry, persistentLoad) { partial = partial };
        var v = u.Run();
        return (v, u.pos);
    }

    public static TensorDType? StorageDType(PickleGlobal g) =>
        g.Module == "torch" && StorageTypes.TryGetValue(g.Name, out var t) ? t : null;

    CheckpointFormatException Bad(string message) => new(file, entry, $"pickle at byte {pos}: {message}");

    byte U8() => pos < data.Length ? data[pos++] : throw (partial ? new NeedMoreData() : Bad("unexpected end of data"));

    ReadOnlySpan<byte> Take(long n)
    {
        if (n > data.Length - pos && partial) throw new NeedMoreData();
        if (n < 0 || n > data.Length - pos) throw Bad($"needs {n} bytes, {data.Length - pos} remain");
        var s = data.AsSpan(pos, (int)n);
        pos += (int)n;
        return s;
    }

    string Line()
    {
        int end = Array.IndexOf(data, (byte)'\n', pos);
        if (end < 0 && partial) throw new NeedMoreData();
        if (end < 0 || end - pos > 1024) throw Bad("unterminated text argument");
        string s = Encoding.ASCII.GetString(data, pos, end - pos);
        pos = end + 1;
        return s;
    }

    object? Pop()
    {
        if (stack.Count == 0) throw Bad("stack underflow");
        var v = stack[^1];
        stack.RemoveAt(stack.Count - 1);
        if (v is Mark) throw Bad("unexpected MARK");
        return v;
    }

    object? Top() => stack.Count > 0 && stack[^1] is not Mark ? stack[^1] : throw Bad("stack underflow");

    List<object?> PopMark()
    {
        int i = stack.Count - 1;
        while (i >= 0 && stack[i] is not Mark) i--;
        if (i < 0) throw Bad("no MARK on the stack");
        var items = stack.GetRange(i + 1, stack.Count - i - 1);
        stack.RemoveRange(i, stack.Count - i);
        return items;
    }

    void Put(long index) => memo[index] = Top();

    object? Get(long index) => memo.TryGetValue(index, out var v) ? v : throw Bad($"memo key {index} was never stored");

    object? Run()
    {
        while (true)
        {
            byte op = U8();
            switch (op)
            {
                case 0x80: U8(); break;                                  // PROTO
                case 0x95: Take(8); break;                               // FRAME
                case 0x2e: return Pop();                                 // STOP
                case 0x28: stack.Add(Mark.Instance); break;              // MARK
                case 0x4e: stack.Add(null); break;                       // NONE
                case 0x88: stack.Add(true); break;                       // NEWTRUE
                case 0x89: stack.Add(false); break;                      // NEWFALSE
                case 0x4a: stack.Add((long)BinaryPrimitives.ReadInt32LittleEndian(Take(4))); break;   // BININT
                case 0x4b: stack.Add((long)U8()); break;                                              // BININT1
                case 0x4d: stack.Add((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(2))); break;  // BININT2
                case 0x8a: stack.Add(Long(U8())); break;                                              // LONG1
                case 0x8b:                                                                            // LONG4
                {
                    int n = BinaryPrimitives.ReadInt32LittleEndian(Take(4));
                    if (n < 0 || n > 4096) throw Bad($"LONG4 of {n} bytes");
                    stack.Add(Long(n));
                    break;
                }
                case 0x49:                                                                            // INT (text)
                {
                    string s = Line();
                    stack.Add(s == "01" ? true : s == "00" ? false : long.TryParse(s, out long v) ? v : throw Bad($"bad INT '{s}'"));
                    break;
                }
                case 0x47: stack.Add(BinaryPrimitives.ReadDoubleBigEndian(Take(8))); break;          // BINFLOAT
                case 0x58: stack.Add(Utf8(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))); break; // BINUNICODE
                case 0x8c: stack.Add(Utf8(U8())); break;                                              // SHORT_BINUNICODE
                case 0x8d: stack.Add(Utf8((long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(Take(8)), long.MaxValue))); break; // BINUNICODE8
                case 0x54: stack.Add(Latin1(BinaryPrimitives.ReadInt32LittleEndian(Take(4)))); break; // BINSTRING
                case 0x55: stack.Add(Latin1(U8())); break;                                            // SHORT_BINSTRING
                case 0x42: stack.Add(Take(BinaryPrimitives.ReadUInt32LittleEndian(Take(4))).ToArray()); break; // BINBYTES
                case 0x43: stack.Add(Take(U8()).ToArray()); break;                                    // SHORT_BINBYTES
                case 0x29: stack.Add(Array.Empty<object?>()); break;     // EMPTY_TUPLE
                case 0x5d: stack.Add(new List<object?>()); break;        // EMPTY_LIST
                case 0x7d: stack.Add(new PickleDict()); break;           // EMPTY_DICT
                case 0x74: stack.Add(PopMark().ToArray()); break;        // TUPLE
                case 0x85: { var a = Pop(); stack.Add(new[] { a }); break; }                          // TUPLE1
                case 0x86: { var b = Pop(); var a = Pop(); stack.Add(new[] { a, b }); break; }        // TUPLE2
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); stack.Add(new[] { a, b, c }); break; } // TUPLE3
                case 0x6c: stack.Add(PopMark()); break;                  // LIST
                case 0x61: { var v = Pop(); AsList(Top()).Add(v); break; }                            // APPEND
                case 0x65: { var items = PopMark(); AsList(Top()).AddRange(items); break; }           // APPENDS
                case 0x64:                                               // DICT
                {
                    var items = PopMark();
                    var d = new PickleDict();
                    AddPairs(d, items);
                    stack.Add(d);
                    break;
                }
                case 0x73: { var v = Pop(); var k = Pop(); AsDict(Top()).Items.Add(new(k, v)); break; } // SETITEM
                case 0x75: { var items = PopMark(); AddPairs(AsDict(Top()), items); break; }          // SETITEMS
                case 0x71: Put(U8()); break;                                                          // BINPUT
                case 0x72: Put(BinaryPrimitives.ReadUInt32LittleEndian(Take(4))); break;              // LONG_BINPUT
                case 0x94: Put(memo.Count); break;                                                    // MEMOIZE
                case 0x68: stack.Add(Get(U8())); break;                                               // BINGET
                case 0x6a: stack.Add(Get(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))); break;   // LONG_BINGET
                case 0x63: stack.Add(Global(Line(), Line())); break;                                  // GLOBAL
                case 0x93:                                                                            // STACK_GLOBAL
                {
                    var name = Pop() as string ?? throw Bad("STACK_GLOBAL needs two strings");
                    var module = Pop() as string ?? throw Bad("STACK_GLOBAL needs two strings");
                    stack.Add(Global(module, name));
                    break;
                }
                case 0x51:                                                                            // BINPERSID
                {
                    var pid = Pop() as object?[] ?? throw Bad("persistent id must be a tuple");
                    if (persistentLoad is null) throw Bad("persistent ids are not expected in this pickle");
                    stack.Add(persistentLoad(pid));
                    break;
                }
                case 0x52:                                                                            // REDUCE
                {
                    var args = Pop() as object?[] ?? throw Bad("REDUCE needs an argument tuple");
                    var callable = Pop() as PickleGlobal ?? throw Bad("REDUCE needs a callable");
                    stack.Add(Reduce(callable, args));
                    break;
                }
                case 0x62:                                                                            // BUILD
                {
                    Pop();   // state: OrderedDict._metadata or a tensor's python attributes; not needed
                    if (Top() is not (PickleDict or TensorRef)) throw Bad("BUILD on an object that is not a dict or tensor");
                    break;
                }
                case 0x81: throw Bad("NEWOBJ (instantiating a class) is not allowed in a state dict");
                default: throw Bad($"opcode 0x{op:x2} is not supported in a state dict");
            }
        }
    }

    List<object?> AsList(object? o) => o as List<object?> ?? throw Bad("APPEND(S) on something that is not a list");

    PickleDict AsDict(object? o) => o as PickleDict ?? throw Bad("SETITEM(S) on something that is not a dict");

    void AddPairs(PickleDict d, List<object?> items)
    {
        if (items.Count % 2 != 0) throw Bad("odd number of items for a dict");
        for (int i = 0; i < items.Count; i += 2) d.Items.Add(new(items[i], items[i + 1]));
    }

    object Long(int n)
    {
        var bytes = Take(n);
        if (n == 0) return 0L;
        if (n <= 8)
        {
            long v = 0;
            for (int i = n - 1; i >= 0; i--) v = (v << 8) | bytes[i];
            int shift = 64 - 8 * n;
            return shift > 0 ? (v << shift) >> shift : v;  // sign-extend
        }
        return new BigInteger(bytes, isUnsigned: false, isBigEndian: false);
    }

    string Utf8(long n)
    {
        var s = Take(n);
        try { return new UTF8Encoding(false, true).GetString(s); }
        catch (DecoderFallbackException) { throw Bad("string is not valid UTF-8"); }
    }

    string Latin1(long n) => n < 0 ? throw Bad("negative string length") : Encoding.Latin1.GetString(Take(n));

    PickleGlobal Global(string module, string name)
    {
        var g = new PickleGlobal(module, name);
        if (AllowedCallables.Contains(g.FullName) || StorageDType(g) is not null) return g;
        throw new UnsafePickleException(file, entry, g.FullName);
    }

    object Reduce(PickleGlobal f, object?[] a)
    {
        switch (f.FullName)
        {
            case "collections.OrderedDict":
                if (a.Length != 0) throw Bad("OrderedDict(...) with arguments is not expected in a state dict");
                return new PickleDict();
            case "torch._utils._rebuild_tensor":
            case "torch._utils._rebuild_tensor_v2":
            {
                if (a.Length < 4) throw Bad($"{f.Name} needs (storage, offset, size, stride, ...)");
                var storage = a[0] as StorageRef ?? throw Bad($"{f.Name}: first argument is not a storage");
                long offset = a[1] is long o && o >= 0 ? o : throw Bad($"{f.Name}: bad storage offset");
                long[] size = Ints(a[2], "size"), stride = Ints(a[3], "stride");
                if (size.Length != stride.Length) throw Bad($"{f.Name}: size has {size.Length} dims but stride {stride.Length}");
                if (size.Any(d => d < 0)) throw Bad($"{f.Name}: negative dimension");
                return new TensorRef(storage, offset, size, stride);
            }
            case "torch._utils._rebuild_parameter":
            case "torch._utils._rebuild_parameter_with_state":
                return a.Length >= 1 && a[0] is TensorRef t ? t : throw Bad($"{f.Name}: first argument is not a tensor");
            default:
                throw Bad($"'{f.FullName}' cannot be called");
        }
    }

    long[] Ints(object? o, string what)
    {
        if (o is not object?[] tuple) throw Bad($"{what} must be a tuple");
        var r = new long[tuple.Length];
        for (int i = 0; i < r.Length; i++) r[i] = tuple[i] is long v ? v : throw Bad($"{what} must hold integers");
        return r;
    }
}
