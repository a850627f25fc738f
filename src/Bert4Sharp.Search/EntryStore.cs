using DuckDB.NET.Data;

namespace Bert4Sharp.Search;

/// <summary>One stored row: the USearch slot, the user's key, text and metadata JSON.</summary>
internal readonly record struct EntryRow(ulong Slot, string Key, string? Text, string? Metadata);

/// <summary>
/// The DuckDB side of a <see cref="VectorIndex"/>: table <c>entries(slot UBIGINT PRIMARY KEY, key VARCHAR UNIQUE,
/// text VARCHAR, metadata VARCHAR)</c>. A writable store lives in memory (copied from the file on load, copied to a
/// new file on save, so a save never half-writes the live file); a read-only one attaches the file READ_ONLY.
/// Table <c>meta(save_id VARCHAR)</c> holds the id of the save that wrote the file, matched against the manifest.
/// Every call holds a lock: one DuckDB connection is not safe for concurrent commands.
/// </summary>
internal sealed class EntryStore : IDisposable
{
    private readonly DuckDBConnection _db;
    private readonly Dictionary<string, ulong>? _slots; // key → slot, kept only when writable
    private readonly Lock _lock = new();

    private EntryStore(DuckDBConnection db, bool writable)
    {
        _db = db;
        if (writable)
        {
            _slots = new Dictionary<string, ulong>(StringComparer.Ordinal);
            foreach (var r in AllRows()) _slots[r.Key] = r.Slot;
        }
    }

    public static EntryStore CreateInMemory()
    {
        var db = Connect();
        Execute(db, "CREATE TABLE entries(slot UBIGINT PRIMARY KEY, key VARCHAR NOT NULL UNIQUE, text VARCHAR, metadata VARCHAR)");
        return new EntryStore(db, writable: true);
    }

    public static EntryStore LoadIntoMemory(string path)
    {
        var db = Connect();
        try
        {
            Execute(db, $"ATTACH {Quote(path)} AS src (READ_ONLY)");
            Execute(db, "COPY FROM DATABASE src TO memory");
            Execute(db, "DETACH src");
            CheckTable(db, path);
            return new EntryStore(db, writable: true);
        }
        catch
        {
            db.Dispose();
            throw;
        }
    }

    public static EntryStore OpenReadOnly(string path)
    {
        var db = Connect();
        try
        {
            Execute(db, $"ATTACH {Quote(path)} AS store (READ_ONLY)");
            Execute(db, "USE store");
            CheckTable(db, path);
            return new EntryStore(db, writable: false);
        }
        catch
        {
            db.Dispose();
            throw;
        }
    }

    public long Count
    {
        get
        {
            lock (_lock)
            {
                using var cmd = _db.CreateCommand();
                cmd.CommandText = "SELECT count(*) FROM entries";
                return Convert.ToInt64(cmd.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
            }
        }
    }

    /// <summary>The save id in table <c>meta</c>, or null when the file has none (written before save ids).</summary>
    public string? SaveId
    {
        get
        {
            lock (_lock)
            {
                using var cmd = _db.CreateCommand();
                cmd.CommandText = "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'";
                if (Convert.ToInt64(cmd.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture) == 0) return null;
                cmd.CommandText = "SELECT save_id FROM meta LIMIT 1";
                return cmd.ExecuteScalar() as string;
            }
        }
    }

    public bool TryGetSlot(string key, out ulong slot)
    {
        lock (_lock)
        {
            if (_slots is not null) return _slots.TryGetValue(key, out slot);
            using var cmd = _db.CreateCommand();
            cmd.CommandText = "SELECT slot FROM entries WHERE key = $key";
            cmd.Parameters.Add(new DuckDBParameter("key", key));
            var value = cmd.ExecuteScalar();
            slot = value is null or DBNull ? 0 : Convert.ToUInt64(value, System.Globalization.CultureInfo.InvariantCulture);
            return value is not null and not DBNull;
        }
    }

    public void Delete(ulong slot, string key)
    {
        lock (_lock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = $"DELETE FROM entries WHERE slot = {slot}";
            cmd.ExecuteNonQuery();
            _slots?.Remove(key);
        }
    }

    public void Insert(IReadOnlyList<ulong> slots, IReadOnlyList<VectorEntry> entries)
    {
        lock (_lock)
        {
            using (var appender = _db.CreateAppender("entries"))
            {
                for (int i = 0; i < entries.Count; i++)
                {
                    var row = appender.CreateRow().AppendValue(slots[i]).AppendValue(entries[i].Key);
                    row = entries[i].Text is null ? row.AppendNullValue() : row.AppendValue(entries[i].Text);
                    row = entries[i].Metadata is null ? row.AppendNullValue() : row.AppendValue(entries[i].Metadata);
                    row.EndRow();
                }
            }
            if (_slots is not null)
                for (int i = 0; i < entries.Count; i++) _slots[entries[i].Key] = slots[i];
        }
    }

    /// <summary>The rows of these slots (those that exist).</summary>
    public Dictionary<ulong, EntryRow> Rows(IReadOnlyCollection<ulong> slots)
    {
        var result = new Dictionary<ulong, EntryRow>(slots.Count);
        if (slots.Count == 0) return result;
        foreach (var r in Query($"SELECT slot, key, text, metadata FROM entries WHERE slot IN ({string.Join(',', slots)})"))
            result[r.Slot] = r;
        return result;
    }

    public IEnumerable<EntryRow> AllRows() => Query("SELECT slot, key, text, metadata FROM entries ORDER BY slot");

    public ulong[] AllSlots()
    {
        lock (_lock)
        {
            var slots = new List<ulong>();
            using var cmd = _db.CreateCommand();
            cmd.CommandText = "SELECT slot FROM entries ORDER BY slot";
            using var reader = cmd.ExecuteReader();
            while (reader.Read()) slots.Add(reader.GetFieldValue<ulong>(0));
            return slots.ToArray();
        }
    }

    /// <summary>Copies the in-memory database, with <paramref name="saveId"/> in table <c>meta</c>, to a new file at <paramref name="path"/>.</summary>
    public void SaveTo(string path, string saveId)
    {
        lock (_lock)
        {
            Execute(_db, "CREATE OR REPLACE TABLE meta(save_id VARCHAR NOT NULL)");
            Execute(_db, $"INSERT INTO meta VALUES ({Quote(saveId)})");
            Execute(_db, $"ATTACH {Quote(path)} AS dst");
            try
            {
                Execute(_db, "COPY FROM DATABASE memory TO dst");
            }
            finally
            {
                Execute(_db, "DETACH dst");
            }
        }
    }

    public void Dispose()
    {
        lock (_lock) _db.Dispose();
    }

    // Materialised under the lock, so no reader stays open on the shared connection.
    private List<EntryRow> Query(string sql)
    {
        lock (_lock)
        {
            var rows = new List<EntryRow>();
            using var cmd = _db.CreateCommand();
            cmd.CommandText = sql;
            using var reader = cmd.ExecuteReader();
            while (reader.Read())
                rows.Add(new EntryRow(reader.GetFieldValue<ulong>(0), reader.GetString(1),
                    reader.IsDBNull(2) ? null : reader.GetString(2), reader.IsDBNull(3) ? null : reader.GetString(3)));
            return rows;
        }
    }

    private static DuckDBConnection Connect()
    {
        var db = new DuckDBConnection("Data Source=:memory:");
        db.Open();
        return db;
    }

    private static void CheckTable(DuckDBConnection db, string path)
    {
        using var cmd = db.CreateCommand();
        cmd.CommandText = "SELECT count(*) FROM information_schema.columns WHERE table_name = 'entries' AND column_name IN ('slot','key','text','metadata')";
        if (Convert.ToInt64(cmd.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture) != 4)
            throw new InvalidDataException($"{path}: DuckDB file without the table entries(slot, key, text, metadata): not a vector index store.");
    }

    private static void Execute(DuckDBConnection db, string sql)
    {
        using var cmd = db.CreateCommand();
        cmd.CommandText = sql;
        cmd.ExecuteNonQuery();
    }

    private static string Quote(string path) => "'" + path.Replace("'", "''", StringComparison.Ordinal) + "'";
}
