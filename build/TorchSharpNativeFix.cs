// MSBuild task (compiled by RoslynCodeTaskFactory against netstandard2.0) that makes TorchSharp-cpu's native libLibTorchSharp.so load on systems whose libstdc++ lacks
// GLIBCXX_3.4.32 (Debian 12). It patches the copy in the build output, never the NuGet cache, and does nothing
// where the system already has that version. It is not a general ELF editor: it checks every assumption and
// fails the build with a message saying which one did not hold.
using System;
using System.Diagnostics;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public class TorchSharpNativeFix : Task
{
    const string MissingVersion = "GLIBCXX_3.4.32";
    const string ShimName = "libduckcxxshim.so";
    const string ShimSymbol = "_ZNSt8ios_base20ios_base_library_initEv";

    /// <summary>The libLibTorchSharp.so in the build output to patch.</summary>
    [Required] public string LibraryPath { get; set; } = "";

    public override bool Execute()
    {
        try
        {
            if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux) || !File.Exists(LibraryPath)) return true;
            string? libstdcxx = FindLibStdCxx();
            if (libstdcxx == null || Contains(File.ReadAllBytes(libstdcxx), MissingVersion))
                return true;
            string dir = Path.GetDirectoryName(Path.GetFullPath(LibraryPath))!;
            BuildShim(Path.Combine(dir, ShimName));
            byte[] elf = File.ReadAllBytes(LibraryPath);
            if (Patch(elf))
            {
                string tmp = LibraryPath + ".tmp";
                File.WriteAllBytes(tmp, elf);
                File.Delete(LibraryPath);
                File.Move(tmp, LibraryPath);
                Log.LogMessage(MessageImportance.High,
                    $"TorchSharp: {libstdcxx} lacks {MissingVersion}; patched {LibraryPath} to load with it.");
            }
            return true;
        }
        catch (Exception e)
        {
            Log.LogError($"TorchSharp native fix failed for {LibraryPath}: {e.Message}");
            return false;
        }
    }

    static string? FindLibStdCxx()
    {
        foreach (var p in new[] { "/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
                                  "/usr/lib64/libstdc++.so.6", "/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6" })
            if (File.Exists(p)) return p;
        return null;
    }

    void BuildShim(string shimPath)
    {
        if (File.Exists(shimPath)) return;
        string src = Path.Combine(Path.GetTempPath(), $"duckcxxshim-{Guid.NewGuid():N}.c");
        File.WriteAllText(src,
            "/* Defines the GCC 13 libstdc++ symbol that libLibTorchSharp.so references; older libstdc++\n" +
            "   initializes iostreams itself, so nothing is left to do here. */\n" +
            $"void duck_ios_base_library_init(void) __asm__(\"{ShimSymbol}\");\n" +
            "void duck_ios_base_library_init(void) {}\n");
        var psi = new ProcessStartInfo("cc", $"-shared -fPIC -nostdlib -O2 -o \"{shimPath}\" \"{src}\"")
        { RedirectStandardError = true, UseShellExecute = false };
        Process p;
        try { p = Process.Start(psi)!; }
        catch (Exception e)
        {
            throw new InvalidOperationException(
                $"a C compiler ('cc') is needed to build the libstdc++ shim ({e.Message}); install gcc (apt-get install gcc).");
        }
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        File.Delete(src);
        if (p.ExitCode != 0) throw new InvalidOperationException($"cc failed building the shim: {err}");
    }

    // Marks the GLIBCXX_3.4.32 requirement weak and adds a DT_NEEDED entry for the shim. The new entry reuses
    // DT_SYMBOLIC (redundant with DF_SYMBOLIC in DT_FLAGS) and its name is written over the tail of the RUNPATH
    // string, whose entries after $ORIGIN/ are paths of the machine that built TorchSharp.
    static bool Patch(byte[] f)
    {
        if (f.Length < 64 || f[0] != 0x7f || f[1] != 'E' || f[2] != 'L' || f[3] != 'F' || f[4] != 2 || f[5] != 1)
            throw new InvalidDataException("not a little-endian ELF64 file");
        long shoff = I64(f, 0x28); int shentsize = U16(f, 0x3A), shnum = U16(f, 0x3C);
        long dynOff = -1, dynSize = 0, dynsymOff = -1, dynsymSize = 0, dynstrOff = -1, verneedOff = -1;
        for (int i = 0; i < shnum; i++)
        {
            long sh = shoff + (long)i * shentsize;
            uint type = U32(f, sh + 4);
            long off = I64(f, sh + 0x18), size = I64(f, sh + 0x20);
            if (type == 6) { dynOff = off; dynSize = size; }            // SHT_DYNAMIC
            else if (type == 11) { dynsymOff = off; dynsymSize = size; } // SHT_DYNSYM
            else if (type == 0x6ffffffe) verneedOff = off;               // SHT_GNU_verneed
        }
        if (dynOff < 0 || dynsymOff < 0 || verneedOff < 0) throw new InvalidDataException("missing dynamic sections");
        dynstrOff = I64(f, FindSectionLink(f, shoff, shentsize, shnum, dynsymOff));

        long symbolicEntry = -1, runpathEntry = -1;
        bool hasShim = false, changed = false;
        for (long e = dynOff; e < dynOff + dynSize; e += 16)
        {
            long tag = I64(f, e);
            if (tag == 0) break;
            if (tag == 1 && Str(f, dynstrOff + I64(f, e + 8)) == ShimName) hasShim = true;
            if (tag == 16) symbolicEntry = e;
            if (tag == 29 || tag == 15) runpathEntry = e;
        }
        bool found = false;
        long vn = verneedOff;
        while (true)
        {
            int cnt = U16(f, vn + 2);
            long aux = vn + U32(f, vn + 8);
            for (int i = 0; i < cnt; i++)
            {
                if (Str(f, dynstrOff + U32(f, aux + 8)) == MissingVersion)
                {
                    found = true;
                    if ((f[aux + 4] & 0x2) == 0) { f[aux + 4] |= 0x2; changed = true; } // vna_flags |= VER_FLG_WEAK
                }
                aux += U32(f, aux + 12);
            }
            uint next = U32(f, vn + 12);
            if (next == 0) break;
            vn += next;
        }
        if (!found) throw new InvalidDataException($"no {MissingVersion} requirement found");

        if (hasShim) return changed;

        if (symbolicEntry < 0 || runpathEntry < 0)
            throw new InvalidDataException("no DT_SYMBOLIC or DT_RUNPATH entry to reuse; TorchSharp's layout changed");

        long runpath = I64(f, runpathEntry + 8);
        string origin = "$ORIGIN/";
        int oldLen = Str(f, dynstrOff + runpath).Length;
        long nameAt = runpath + origin.Length + 1;
        if (oldLen < origin.Length + 1 + ShimName.Length || Str(f, dynstrOff + runpath).Substring(0, origin.Length) != origin)
            throw new InvalidDataException("RUNPATH does not start with $ORIGIN/ or is too short to hold the shim name");
        // Nothing else may point into the part of the string that is overwritten.
        long tailStart = runpath + origin.Length, tailEnd = runpath + oldLen;
        for (long s = dynsymOff; s < dynsymOff + dynsymSize; s += 24)
            if (U32(f, s) > tailStart && U32(f, s) <= tailEnd)
                throw new InvalidDataException("a symbol name shares the RUNPATH string");

        f[dynstrOff + runpath + origin.Length] = 0;
        byte[] name = Encoding.ASCII.GetBytes(ShimName);
        Array.Copy(name, 0, f, dynstrOff + nameAt, name.Length);
        f[dynstrOff + nameAt + name.Length] = 0;
        Array.Copy(BitConverter.GetBytes(1L), 0, f, symbolicEntry, 8); // DT_NEEDED
        Array.Copy(BitConverter.GetBytes(nameAt), 0, f, symbolicEntry + 8, 8);
        return true;
    }

    static long FindSectionLink(byte[] f, long shoff, int shentsize, int shnum, long sectionOffset)
    {
        for (int i = 0; i < shnum; i++)
        {
            long sh = shoff + (long)i * shentsize;
            if (I64(f, sh + 0x18) != sectionOffset) continue;
            long link = U32(f, sh + 0x28);
            return shoff + link * shentsize + 0x18; // the linked section's sh_offset field
        }
        throw new InvalidDataException("dynsym section not found");
    }

    static bool Contains(byte[] hay, string needle)
    {
        byte[] n = Encoding.ASCII.GetBytes(needle + "\0");
        for (int i = 0; i + n.Length <= hay.Length; i++)
        {
            int j = 0;
            while (j < n.Length && hay[i + j] == n[j]) j++;
            if (j == n.Length) return true;
        }
        return false;
    }

    static string Str(byte[] f, long at)
    {
        int end = Array.IndexOf(f, (byte)0, (int)at);
        return Encoding.ASCII.GetString(f, (int)at, end - (int)at);
    }

    static int U16(byte[] f, long at) => BitConverter.ToUInt16(f, (int)at);
    static uint U32(byte[] f, long at) => BitConverter.ToUInt32(f, (int)at);
    static long I64(byte[] f, long at) => BitConverter.ToInt64(f, (int)at);
}
