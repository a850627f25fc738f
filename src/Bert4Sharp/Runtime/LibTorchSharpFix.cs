// This one file is compiled twice: into the Bert4Sharp library (so `b4s doctor` and the tests can
// inspect and patch), and by MSBuild's RoslynCodeTaskFactory as the build task in
// build/Bert4Sharp.NativeFix.targets (where BERT4SHARP_LIBRARY is not defined and only
// netstandard2.0 APIs exist). Keep it to plain byte arrays and C# 7.3.
//
// Why it exists: TorchSharp 0.107.0's libLibTorchSharp.so was linked against GCC 13's libstdc++ and
// asks for version GLIBCXX_3.4.32 for exactly one symbol, std::ios_base_library_init(). Debian 12 and
// Ubuntu 22.04 ship GCC 12's libstdc++ (newest node GLIBCXX_3.4.30), so the dynamic loader refuses the
// library. The fix edits the build-output copy: mark the version need WEAK, make the symbol
// unversioned and rename it (in .dynstr) to sched_yield, a harmless glibc function. See
// docs/torchsharp-runtime-fix.md for the details and for when this can be deleted.
#nullable disable
using System;
using System.IO;
using System.Text;

namespace Bert4Sharp.Runtime
{
    /// <summary>State of a libLibTorchSharp.so copy with respect to the GCC-12 runtime fix.</summary>
    public enum LibTorchSharpFixState
    {
        /// <summary>The file does not need GLIBCXX_3.4.32 (another TorchSharp build); nothing to do.</summary>
        NotNeeded,
        /// <summary>The file needs GLIBCXX_3.4.32 and has not been patched.</summary>
        Unpatched,
        /// <summary>The file carries the fix (weak version need, symbol rebound to sched_yield).</summary>
        Patched,
    }

    /// <summary>
    /// Inspects and patches libLibTorchSharp.so so that it loads against libstdc++ from GCC 12.
    /// Pure managed ELF64 editing: no patchelf, no compiler.
    /// </summary>
    public static class LibTorchSharpFix
    {
        /// <summary>The version node GCC 13 introduced and GCC 12 lacks.</summary>
        public const string MissingVersion = "GLIBCXX_3.4.32";
        /// <summary>The only symbol of libLibTorchSharp.so bound to <see cref="MissingVersion"/>.</summary>
        public const string Symbol = "_ZSt21ios_base_library_initv";
        /// <summary>What the symbol is renamed to: present in every glibc, harmless, never called by the fix.</summary>
        public const string Replacement = "sched_yield";

        const uint ShtDynsym = 11;
        const uint ShtVerneed = 0x6ffffffe;
        const uint ShtVersym = 0x6fffffff;
        const ushort VerFlagWeak = 0x2;

        sealed class Layout
        {
            public int VernauxFlagsOffset = -1;
            public ushort VersionIndex;
            public bool Weak;
            public int VersymOffset = -1;
            public ushort Versym;
            public int NameOffset = -1;      // file offset of the symbol's name in .dynstr
            public string SymbolName;
        }

        /// <summary>Reports whether <paramref name="path"/> needs, lacks or has the fix.</summary>
        /// <exception cref="InvalidDataException">The file is not a little-endian ELF64 shared library.</exception>
        public static LibTorchSharpFixState Inspect(string path)
        {
            return Inspect(File.ReadAllBytes(path), path);
        }

        /// <summary>Reports whether the ELF image in <paramref name="image"/> needs, lacks or has the fix.</summary>
        public static LibTorchSharpFixState Inspect(byte[] image, string name)
        {
            Layout l = Analyse(image, name);
            if (l == null) return LibTorchSharpFixState.NotNeeded;
            bool patched = l.Weak && l.Versym == 1 && l.SymbolName == Replacement;
            return patched ? LibTorchSharpFixState.Patched : LibTorchSharpFixState.Unpatched;
        }

        /// <summary>
        /// Patches <paramref name="path"/> in place (write to a temporary file, then rename).
        /// Idempotent: a patched or unaffected file is left untouched. Returns the state after the call.
        /// </summary>
        public static LibTorchSharpFixState Patch(string path)
        {
            byte[] image = File.ReadAllBytes(path);
            Layout l = Analyse(image, path);
            if (l == null) return LibTorchSharpFixState.NotNeeded;
            if (l.Weak && l.Versym == 1 && l.SymbolName == Replacement) return LibTorchSharpFixState.Patched;

            WriteU16(image, l.VernauxFlagsOffset, (ushort)(ReadU16(image, l.VernauxFlagsOffset) | VerFlagWeak));
            WriteU16(image, l.VersymOffset, 1);
            if (l.SymbolName != Replacement)
            {
                byte[] repl = Encoding.ASCII.GetBytes(Replacement);
                int oldLen = Encoding.ASCII.GetByteCount(l.SymbolName);
                for (int i = 0; i < oldLen; i++) image[l.NameOffset + i] = i < repl.Length ? repl[i] : (byte)0;
            }

            // Write beside the original, then rename over it: a reader never sees half a library, and a
            // hard link to the NuGet cache (if the SDK made one) is broken instead of written through.
            string tmp = path + ".b4s-tmp";
            File.WriteAllBytes(tmp, image);
            try
            {
                if (Environment.OSVersion.Platform == PlatformID.Unix)
                    CopyUnixMode(path, tmp);
                File.Replace(tmp, path, null);
            }
            finally
            {
                if (File.Exists(tmp)) File.Delete(tmp);
            }
            LibTorchSharpFixState after = Inspect(path);
            if (after != LibTorchSharpFixState.Patched)
                throw new InvalidDataException(path + ": the runtime fix was written but the file does not read back as patched.");
            return after;
        }

        static void CopyUnixMode(string from, string to)
        {
#if BERT4SHARP_LIBRARY
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(to, File.GetUnixFileMode(from));
#endif
        }

        /// <summary>
        /// Finds the system's libstdc++.so.6 and reports whether it defines <see cref="MissingVersion"/>.
        /// Returns null when no libstdc++ could be found in the usual places.
        /// </summary>
        public static bool? SystemLibStdCxxHasVersion(out string foundAt)
        {
            foundAt = null;
            var dirs = new System.Collections.Generic.List<string>();
            string ld = Environment.GetEnvironmentVariable("LD_LIBRARY_PATH");
            if (!string.IsNullOrEmpty(ld)) dirs.AddRange(ld.Split(':'));
            dirs.AddRange(new[]
            {
                "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                "/lib/aarch64-linux-gnu", "/usr/lib64", "/lib64", "/usr/local/lib64", "/usr/local/lib",
                "/usr/lib", "/lib",
            });
            foreach (string d in dirs)
            {
                if (string.IsNullOrEmpty(d)) continue;
                string p = Path.Combine(d, "libstdc++.so.6");
                if (!File.Exists(p)) continue;
                foundAt = p;
                return ContainsAscii(File.ReadAllBytes(p), MissingVersion + "\0");
            }
            return null;
        }

        static bool ContainsAscii(byte[] hay, string needle)
        {
            byte[] n = Encoding.ASCII.GetBytes(needle);
            for (int i = 0; i + n.Length <= hay.Length; i++)
            {
                if (hay[i] != n[0]) continue;
                int j = 1;
                while (j < n.Length && hay[i + j] == n[j]) j++;
                if (j == n.Length) return true;
            }
            return false;
        }

        // Returns null when the image does not need GLIBCXX_3.4.32 for the symbol.
        static Layout Analyse(byte[] b, string name)
        {
            if (b.Length < 64 || b[0] != 0x7f || b[1] != (byte)'E' || b[2] != (byte)'L' || b[3] != (byte)'F')
                throw new InvalidDataException(name + ": not an ELF file.");
            if (b[4] != 2 || b[5] != 1)
                throw new InvalidDataException(name + ": only little-endian ELF64 is supported.");
            long shoff = (long)ReadU64(b, 0x28);
            int shentsize = ReadU16(b, 0x3A), shnum = ReadU16(b, 0x3C);
            if (shentsize < 64 || shoff <= 0 || shoff + (long)shentsize * shnum > b.Length)
                throw new InvalidDataException(name + ": section header table lies outside the file.");

            int dynsym = -1, verneed = -1, versym = -1;
            for (int i = 0; i < shnum; i++)
            {
                uint type = ReadU32(b, (int)(shoff + (long)i * shentsize) + 4);
                if (type == ShtDynsym) dynsym = i;
                else if (type == ShtVerneed) verneed = i;
                else if (type == ShtVersym) versym = i;
            }
            if (dynsym < 0 || verneed < 0 || versym < 0) return null;

            Func<int, int> secOff = s => (int)ReadU64(b, (int)(shoff + (long)s * shentsize) + 0x18);
            Func<int, int> secSize = s => (int)ReadU64(b, (int)(shoff + (long)s * shentsize) + 0x20);
            Func<int, int> secLink = s => (int)ReadU32(b, (int)(shoff + (long)s * shentsize) + 0x28);
            Func<int, int> secInfo = s => (int)ReadU32(b, (int)(shoff + (long)s * shentsize) + 0x2C);
            int dynstr = secLink(dynsym);
            if (dynstr < 0 || dynstr >= shnum) throw new InvalidDataException(name + ": .dynsym links to no string table.");
            int strOff = secOff(dynstr), strSize = secSize(dynstr);
            if (strOff < 0 || strOff + (long)strSize > b.Length) throw new InvalidDataException(name + ": .dynstr lies outside the file.");
            Func<uint, string> str = o =>
            {
                if (o >= strSize) throw new InvalidDataException(name + ": string offset past .dynstr.");
                int s = strOff + (int)o, e = s;
                while (e < strOff + strSize && b[e] != 0) e++;
                return Encoding.ASCII.GetString(b, s, e - s);
            };

            var l = new Layout();
            // .gnu.version_r: Verneed chain, each with a Vernaux chain.
            int vn = secOff(verneed), vnCount = secInfo(verneed);
            for (int i = 0; i < vnCount && vn > 0 && vn + 16 <= b.Length; i++)
            {
                int cnt = ReadU16(b, vn + 2);
                int aux = vn + (int)ReadU32(b, vn + 8);
                for (int j = 0; j < cnt && aux + 16 <= b.Length; j++)
                {
                    if (str(ReadU32(b, aux + 8)) == MissingVersion)
                    {
                        l.VernauxFlagsOffset = aux + 4;
                        l.Weak = (ReadU16(b, aux + 4) & VerFlagWeak) != 0;
                        l.VersionIndex = (ushort)(ReadU16(b, aux + 6) & 0x7fff);
                    }
                    uint next = ReadU32(b, aux + 12);
                    if (next == 0) break;
                    aux += (int)next;
                }
                uint vnNext = ReadU32(b, vn + 12);
                if (vnNext == 0) break;
                vn += (int)vnNext;
            }
            if (l.VernauxFlagsOffset < 0) return null;

            int symOff = secOff(dynsym), symCount = secSize(dynsym) / 24, vsOff = secOff(versym);
            if (vsOff + 2L * symCount > b.Length || symOff + 24L * symCount > b.Length)
                throw new InvalidDataException(name + ": .dynsym or .gnu.version lies outside the file.");
            int fallback = -1;
            for (int i = 0; i < symCount; i++)
            {
                uint nameIdx = ReadU32(b, symOff + 24 * i);
                string s = str(nameIdx);
                ushort vs = (ushort)(ReadU16(b, vsOff + 2 * i) & 0x7fff);
                if (s == Symbol || (s == Replacement && vs == 1 && l.Weak))
                {
                    if (s == Replacement && fallback >= 0) continue;
                    fallback = i;
                    l.VersymOffset = vsOff + 2 * i;
                    l.Versym = vs;
                    l.NameOffset = strOff + (int)nameIdx;
                    l.SymbolName = s;
                    if (s == Symbol) break;
                }
            }
            if (l.VersymOffset < 0)
                throw new InvalidDataException(name + ": needs " + MissingVersion + " but has no " + Symbol + " symbol; this TorchSharp build is not the one the fix was made for.");
            if (l.SymbolName == Symbol && l.Versym != l.VersionIndex && l.Versym != 1)
                throw new InvalidDataException(name + ": " + Symbol + " is bound to version index " + l.Versym + ", expected " + l.VersionIndex + ".");
            // The in-place rename is only safe if no other name shares the string's bytes (suffix sharing).
            if (l.SymbolName == Symbol)
            {
                int start = l.NameOffset - strOff, end = start + Symbol.Length;
                for (int i = 0; i < symCount; i++)
                {
                    int o = (int)ReadU32(b, symOff + 24 * i);
                    if (o > start && o <= end)
                        throw new InvalidDataException(name + ": another symbol name shares the bytes of " + Symbol + "; refusing to rename it in place.");
                }
            }
            return l;
        }

        static ushort ReadU16(byte[] b, int o) { return (ushort)(b[o] | b[o + 1] << 8); }
        static uint ReadU32(byte[] b, int o) { return (uint)(b[o] | b[o + 1] << 8 | b[o + 2] << 16 | b[o + 3] << 24); }
        static ulong ReadU64(byte[] b, int o) { return ReadU32(b, o) | (ulong)ReadU32(b, o + 4) << 32; }
        static void WriteU16(byte[] b, int o, ushort v) { b[o] = (byte)v; b[o + 1] = (byte)(v >> 8); }
    }

#if !BERT4SHARP_LIBRARY
    /// <summary>MSBuild task: applies <see cref="LibTorchSharpFix"/> to every libLibTorchSharp.so under a folder.</summary>
    public sealed class Bert4SharpPatchLibTorchSharp : Microsoft.Build.Utilities.Task
    {
        /// <summary>Folder to search (the output or publish directory).</summary>
        [Microsoft.Build.Framework.Required]
        public string Directory { get; set; }

        /// <summary>auto (patch only if the system libstdc++ lacks GLIBCXX_3.4.32), always, or never.</summary>
        public string Mode { get; set; }

        public override bool Execute()
        {
            string mode = string.IsNullOrEmpty(Mode) ? "auto" : Mode.ToLowerInvariant();
            if (mode == "never") return true;
            if (mode != "auto" && mode != "always")
            {
                Log.LogError("Bert4SharpNativeFix must be auto, always or never; got '" + Mode + "'.");
                return false;
            }
            if (!System.IO.Directory.Exists(Directory)) return true;
            string[] files = System.IO.Directory.GetFiles(Directory, "libLibTorchSharp.so", SearchOption.AllDirectories);
            if (files.Length == 0) return true;
            if (mode == "auto")
            {
                string at;
                bool? has = LibTorchSharpFix.SystemLibStdCxxHasVersion(out at);
                if (has == true)
                {
                    Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low, "Bert4Sharp: " + at + " has " + LibTorchSharpFix.MissingVersion + "; libLibTorchSharp.so left as shipped.");
                    return true;
                }
                if (has == null)
                {
                    Log.LogWarning("Bert4Sharp: no libstdc++.so.6 found; libLibTorchSharp.so left as shipped.");
                    return true;
                }
            }
            foreach (string f in files)
            {
                try
                {
                    LibTorchSharpFixState before = LibTorchSharpFix.Inspect(f);
                    if (before != LibTorchSharpFixState.Unpatched) continue;
                    LibTorchSharpFix.Patch(f);
                    Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Normal, "Bert4Sharp: applied the GCC-12 runtime fix to " + f);
                }
                catch (Exception e)
                {
                    Log.LogError("Bert4Sharp: could not apply the runtime fix to " + f + ": " + e.Message);
                    return false;
                }
            }
            return true;
        }
    }
#endif
}
