namespace Bert4Sharp.Bench;

using System.Globalization;

/// <summary>The benches' <c>--name value</c> options.</summary>
static class BenchArgs
{
    /// <summary>The value after <paramref name="name"/>, or null.</summary>
    public static string? Value(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    /// <summary>The value after <paramref name="name"/> parsed (invariant culture), or <paramref name="fallback"/>.</summary>
    public static T Get<T>(string[] args, string name, T fallback) where T : IParsable<T> =>
        Value(args, name) is { } v ? T.Parse(v, CultureInfo.InvariantCulture) : fallback;
}
