namespace Bert4Sharp.Tokenization;

using System.Globalization;
using System.Text;

/// <summary>
/// Character classes exactly as bert4keras's <c>Tokenizer</c> defines them (code points, not UTF-16 units).
/// </summary>
public static class CharClasses
{
    const byte Isolated = 1, Space = 2, Dropped = 4;

    // Classes of every BMP character, computed once (65,536 category look-ups, about a millisecond):
    // tokenising then costs one array read per character.
    static readonly byte[] Bmp = BuildBmp();

    static byte[] BuildBmp()
    {
        var t = new byte[0x10000];
        for (int cp = 0; cp < t.Length; cp++)
        {
            if (cp >= 0xD800 && cp <= 0xDFFF) continue;   // surrogates: word characters
            byte b = 0;
            if (IsCjkSlow(cp) || IsPunctuationSlow(cp)) b |= Isolated;
            if (IsSpaceSlow(cp)) b |= Space;
            if (IsDroppedSlow(cp)) b |= Dropped;
            t[cp] = b;
        }
        return t;
    }

    /// <summary>The 8 CJK ranges of bert4keras (and Google BERT): unified ideographs, extensions A–E, compatibility ideographs.</summary>
    public static bool IsCjk(int cp) => IsCjkSlow(cp);

    static bool IsCjkSlow(int cp) =>
        (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
        (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
        (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);

    /// <summary>ASCII symbols (33–47, 58–64, 91–96, 123–126) and every Unicode P* category.</summary>
    public static bool IsPunctuation(int cp) => IsPunctuationSlow(cp);

    static bool IsPunctuationSlow(int cp)
    {
        if (cp < 128) return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126);
        return CharUnicodeInfo.GetUnicodeCategory(cp) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
            or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;
    }

    /// <summary>
    /// Separators: space, \t, \n, \r, Zs (bert4keras's <c>_is_space</c>), plus Zl and Zp, which bert4keras
    /// keeps in the text but Python's <c>str.split()</c> then splits on.
    /// </summary>
    public static bool IsSpace(int cp) => cp < 0x10000 ? (Bmp[cp] & Space) != 0 : IsSpaceSlow(cp);

    static bool IsSpaceSlow(int cp)
    {
        if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r') return true;
        if (cp < 128) return false;
        return CharUnicodeInfo.GetUnicodeCategory(cp) is UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator;
    }

    /// <summary>Dropped characters: NUL, U+FFFD and the Cc/Cf categories (tab, newline, carriage return are spaces first).</summary>
    public static bool IsDropped(int cp) => cp < 0x10000 ? (Bmp[cp] & Dropped) != 0 : IsDroppedSlow(cp);

    static bool IsDroppedSlow(int cp)
    {
        if (cp == 0 || cp == 0xFFFD) return true;
        if (cp < 32) return !(cp == '\t' || cp == '\n' || cp == '\r');
        if (cp < 127) return false;
        return CharUnicodeInfo.GetUnicodeCategory(cp) is UnicodeCategory.Control or UnicodeCategory.Format;
    }

    /// <summary>True for characters that <see cref="BertWordPieceTokenizer"/> isolates as one token (CJK or punctuation).</summary>
    public static bool IsIsolated(int cp) => cp < 0x10000 ? (Bmp[cp] & Isolated) != 0 : IsCjkSlow(cp) || IsPunctuationSlow(cp);

    /// <summary>bert4keras's CJK punctuation list, used by <see cref="BertWordPieceTokenizer.Decode"/>.</summary>
    public const string CjkPunctuation =
        "\uff02\uff03\uff04\uff05\uff06\uff07\uff08\uff09\uff0a\uff0b\uff0c\uff0d\uff0f\uff1a\uff1b\uff1c\uff1d\uff1e\uff20\uff3b\uff3c\uff3d\uff3e\uff3f\uff40\uff5b\uff5c\uff5d\uff5e\uff5f\uff60\uff62\uff63\uff64\u3000\u3001\u3003\u3008\u3009\u300a\u300b\u300c\u300d\u300e\u300f\u3010\u3011\u3014\u3015\u3016\u3017\u3018\u3019\u301a\u301b\u301c\u301d\u301e\u301f\u3030\u303e\u303f\u2013\u2014\u2018\u2019\u201b\u201c\u201d\u201e\u201f\u2026\u2027\ufe4f\ufe51\ufe54\u00b7\uff01\uff1f\uff61\u3002";

    /// <summary>
    /// Lower-cases one code point the way Python's <c>str.lower()</c> does for it: full case mapping for
    /// U+0130 (→ "i̇"), otherwise the simple invariant mapping. Final sigma is handled by the caller.
    /// </summary>
    public static string LowerFull(Rune r)
    {
        if (r.Value == 0x130) return "i\u0307";
        var l = Rune.ToLowerInvariant(r);
        return l.ToString();
    }
}
