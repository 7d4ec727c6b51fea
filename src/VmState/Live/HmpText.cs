using System.Globalization;
using System.Text.RegularExpressions;
using VmState.Arch.Arm64;
using VmState.Arch.X86;
using VmState.Memory;

namespace VmState.Live;

/// <summary>
/// Parsers for HMP text QEMU 7.2 prints: "info mtree -f" (hw/core/.. memory.c mtree_print_flatview) and
/// "info registers -a" (target/i386/cpu-dump.c x86_cpu_dump_state; target/arm/cpu.c aarch64_cpu_dump_state).
/// </summary>
public static partial class HmpText
{
    /// <summary>One RAM-backed line of a flat view.</summary>
    public sealed record RamRegion(ulong Start, ulong Length, string Name, ulong Offset, bool ReadOnly);

    /// <summary>The RAM and ROM regions of the CPU's flat view (root "system", else "memory").</summary>
    public static IReadOnlyList<RamRegion> ParseFlatViewRam(string mtree)
    {
        var views = new List<(string Root, List<RamRegion> Regions)>();
        List<RamRegion>? current = null;
        foreach (string raw in mtree.Split('\n'))
        {
            string line = raw.TrimEnd('\r');
            Match root = RootLine().Match(line);
            if (root.Success)
            {
                current = [];
                views.Add((root.Groups[1].Value, current));
                continue;
            }

            Match m = RegionLine().Match(line);
            if (!m.Success || current is null)
            {
                continue;
            }

            string kind = m.Groups[3].Value;
            if (kind is not ("ram" or "rom" or "ramd" or "romd"))
            {
                continue;
            }

            ulong start = Hex(m.Groups[1].Value);
            ulong end = Hex(m.Groups[2].Value);
            ulong offset = m.Groups[5].Success ? Hex(m.Groups[5].Value) : 0;
            current.Add(new RamRegion(start, end - start + 1, m.Groups[4].Value.Trim(), offset, kind is "rom" or "romd"));
        }

        foreach (string wanted in new[] { "system", "memory" })
        {
            foreach ((string r, List<RamRegion> regions) in views)
            {
                if (r == wanted && regions.Count > 0)
                {
                    return regions;
                }
            }
        }

        throw new FormatException("\"info mtree -f\" shows no flat view of system memory with RAM");
    }

    /// <summary>
    /// The RAM blocks of the machine's main RAM in the order QEMU concatenates them, from "info mtree" (not -f):
    /// the region the "ram-below-4g" alias points at (QEMU 7.2 <c>hw/i386/pc.c</c> pc_memory_init), and, when that
    /// region is a container (NUMA nodes' memdev backends, <c>hw/core/numa.c</c>), its RAM subregions by offset.
    /// </summary>
    /// <exception cref="FormatException">The text has no "ram-below-4g" alias or no listing of the region it names.</exception>
    public static IReadOnlyList<string> ParseMainRam(string mtree)
    {
        ArgumentNullException.ThrowIfNull(mtree);
        string[] lines = mtree.Split('\n');
        string? target = null;
        foreach (string line in lines)
        {
            Match a = BelowFourGiBAlias().Match(line);
            if (a.Success)
            {
                target = a.Groups[1].Value;
                break;
            }
        }

        if (target is null)
        {
            throw new FormatException("\"info mtree\" shows no ram-below-4g alias (not a pc or q35 machine?)");
        }

        for (int i = 0; i < lines.Length; i++)
        {
            if (lines[i].TrimEnd('\r') != $"memory-region: {target}")
            {
                continue;
            }

            var children = new List<(ulong Start, string Name)>();
            (string Kind, string Name)? root = null;
            for (int j = i + 1; j < lines.Length && lines[j].TrimEnd('\r').Length > 0; j++)
            {
                Match m = RegionLine().Match(lines[j].TrimEnd('\r'));
                if (!m.Success)
                {
                    continue;
                }

                if (root is null)
                {
                    root = (m.Groups[3].Value, m.Groups[4].Value.Trim());
                }
                else if (m.Groups[3].Value == "ram")
                {
                    children.Add((Hex(m.Groups[1].Value), m.Groups[4].Value.Trim()));
                }
            }

            if (children.Count > 0)
            {
                return children.OrderBy(c => c.Start).Select(c => c.Name).ToList();
            }

            if (root is ("ram", string name))
            {
                return [name];
            }

            break;
        }

        throw new FormatException($"\"info mtree\" does not list the RAM of region {target}");
    }

    /// <summary>The host address in "Host virtual address for 0x100000 (pc.ram) is 0x7f633ff00000".</summary>
    public static ulong? ParseGpa2Hva(string text)
    {
        Match m = Gpa2Hva().Match(text);
        return m.Success ? Hex(m.Groups[1].Value) : null;
    }

    /// <summary>Every vCPU of "info registers -a" as <see cref="X86CpuState"/>.</summary>
    public static IReadOnlyList<X86CpuState> ParseRegisters(string text)
    {
        var cpus = new List<X86CpuState>();
        X86CpuState? c = null;
        foreach (string raw in text.Split('\n'))
        {
            string line = raw.TrimEnd('\r');
            Match header = CpuHeader().Match(line);
            if (header.Success)
            {
                c = new X86CpuState { Index = int.Parse(header.Groups[1].Value, CultureInfo.InvariantCulture) };
                cpus.Add(c);
                continue;
            }

            if (c is null)
            {
                continue;
            }

            Match seg = SegmentLine().Match(line);
            if (seg.Success)
            {
                var s = new X86Segment((uint)Hex(seg.Groups[2].Value), Hex(seg.Groups[3].Value), (uint)Hex(seg.Groups[4].Value), (uint)Hex(seg.Groups[5].Value));
                switch (seg.Groups[1].Value.Trim())
                {
                    case "ES": c.Segments[X86CpuState.Es] = s; break;
                    case "CS": c.Segments[X86CpuState.Cs] = s; break;
                    case "SS": c.Segments[X86CpuState.Ss] = s; break;
                    case "DS": c.Segments[X86CpuState.Ds] = s; break;
                    case "FS": c.Segments[X86CpuState.Fs] = s; break;
                    case "GS": c.Segments[X86CpuState.Gs] = s; break;
                    case "LDT": c.Ldt = s; break;
                    case "TR": c.Tr = s; break;
                }

                continue;
            }

            Match table = TableLine().Match(line);
            if (table.Success)
            {
                var t = new X86Segment(0, Hex(table.Groups[2].Value), (uint)Hex(table.Groups[3].Value), 0);
                if (table.Groups[1].Value == "GDT")
                {
                    c.Gdt = t;
                }
                else
                {
                    c.Idt = t;
                }

                continue;
            }

            foreach (Match m in Register().Matches(line))
            {
                ulong v = Hex(m.Groups[2].Value);
                string name = m.Groups[1].Value;
                int gi = Array.IndexOf(X86CpuState.GeneralRegisterNames, name.ToLowerInvariant());
                if (gi >= 0)
                {
                    c.Regs[gi] = v;
                    continue;
                }

                switch (name)
                {
                    case "RIP": c.Rip = v; break;
                    case "RFL": c.Rflags = v; break;
                    case "CR0": c.Cr0 = v; break;
                    case "CR2": c.Cr2 = v; break;
                    case "CR3": c.Cr3 = v; break;
                    case "CR4": c.Cr4 = v; break;
                    case "EFER": c.Efer = v; break;
                }
            }
        }

        return cpus;
    }

    /// <summary>
    /// Every vCPU of an AArch64 guest's "info registers -a" (QEMU 7.2 <c>target/arm/cpu.c</c> aarch64_cpu_dump_state:
    /// "CPU#n", " PC=… X00=…" three to a line, "SP=…", "PSTATE=%08x NZCV EL1h", "FPCR=%08x FPSR=%08x", then the
    /// vector registers as "Q00=hi:lo" or, with SVE, "Z00=…:hi:lo" highest doubleword first, or for vectors above 256
    /// bits in chunks "Z00[3-2]=…" and "   [1-0]=…:hi:lo"). The system registers are
    /// not in this text (see <see cref="Arm64GdbstubRegisters"/>). Values that are not 1 to 16 hex digits are skipped,
    /// so hostile text yields fewer registers, never an exception.
    /// </summary>
    public static IReadOnlyList<Arm64CpuState> ParseArm64Registers(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var cpus = new List<Arm64CpuState>();
        Arm64CpuState? c = null;
        int? sveRegister = null;
        foreach (string raw in text.Split('\n'))
        {
            string line = raw.TrimEnd('\r');
            Match header = CpuHeader().Match(line);
            if (header.Success)
            {
                if (!int.TryParse(header.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out int index))
                {
                    c = null;
                    continue;
                }

                c = new Arm64CpuState { Index = index };
                cpus.Add(c);
                sveRegister = null;
                continue;
            }

            if (c is null)
            {
                continue;
            }

            // Vectors longer than 256 bits come in chunks of two quadwords, highest first: "Z00[3-2]=d7:d6:d5:d4" then
            // "   [1-0]=d3:d2:d1:d0"; the chunk that ends at quadword 0 holds V<n> in its last two doublewords.
            Match chunk = Arm64SveChunk().Match(line);
            if (chunk.Success)
            {
                if (chunk.Groups["v"].Success)
                {
                    sveRegister = int.Parse(chunk.Groups["v"].Value, CultureInfo.InvariantCulture);
                }

                if (sveRegister is int z && chunk.Groups["lo"].Value == "0")
                {
                    string[] words = chunk.Groups["value"].Value.Split(':');
                    BinaryPrimitivesLe(c.V.AsSpan(z * 16, 8), Hex(words[^1]));
                    BinaryPrimitivesLe(c.V.AsSpan((z * 16) + 8, 8), Hex(words[^2]));
                    c.HasFpSimd = true;
                    sveRegister = null;
                }

                continue;
            }

            foreach (Match m in Arm64Register().Matches(line))
            {
                string value = m.Groups["value"].Value;
                if (m.Groups["vec"].Success)
                {
                    // The last two doublewords are the low 128 bits: V<n> is d[1]:d[0].
                    int n = int.Parse(m.Groups["v"].Value, CultureInfo.InvariantCulture);
                    string[] words = value.Split(':');
                    if (words.Length >= 2)
                    {
                        BinaryPrimitivesLe(c.V.AsSpan(n * 16, 8), Hex(words[^1]));
                        BinaryPrimitivesLe(c.V.AsSpan((n * 16) + 8, 8), Hex(words[^2]));
                        c.HasFpSimd = true;
                    }

                    continue;
                }

                if (value.Contains(':', StringComparison.Ordinal))
                {
                    continue;
                }

                ulong v = Hex(value);
                if (m.Groups["x"].Success)
                {
                    c.X[int.Parse(m.Groups["x"].Value, CultureInfo.InvariantCulture)] = v;
                    continue;
                }

                switch (m.Groups["name"].Value)
                {
                    case "PC": c.Pc = v; break;
                    case "SP": c.Sp = v; break;
                    case "PSTATE": c.Pstate = (uint)v; break;
                    case "FPCR": c.Fpcr = (uint)v; break;
                    case "FPSR": c.Fpsr = (uint)v; break;
                }
            }
        }

        return cpus;
    }

    private static void BinaryPrimitivesLe(Span<byte> destination, ulong value) =>
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(destination, value);

    private static ulong Hex(string s) => ulong.Parse(s, NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"^\s*Root memory region: (\S+)")]
    private static partial Regex RootLine();

    [GeneratedRegex(@"^\s+([0-9a-f]{16})-([0-9a-f]{16}) \(prio -?\d+, ([a-z/]+)\): ([^@]+?)(?: @([0-9a-f]{16}))?(?: KVM)?\s*$")]
    private static partial Regex RegionLine();

    [GeneratedRegex(@"\): alias ram-below-4g @(\S+) [0-9a-f]{16}-")]
    private static partial Regex BelowFourGiBAlias();

    [GeneratedRegex(@"Host virtual address for 0x[0-9a-f]+ \(.*\) is 0x([0-9a-f]+)")]
    private static partial Regex Gpa2Hva();

    [GeneratedRegex(@"^CPU#(\d+)")]
    private static partial Regex CpuHeader();

    [GeneratedRegex(@"^(ES |CS |SS |DS |FS |GS |LDT|TR )=([0-9a-f]{4}) ([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+)")]
    private static partial Regex SegmentLine();

    [GeneratedRegex(@"^(GDT|IDT)=\s+([0-9a-f]+) ([0-9a-f]+)")]
    private static partial Regex TableLine();

    [GeneratedRegex(@"\b(R[A-Z]X|R[SD]I|R[SB]P|R\d{1,2}|RIP|RFL|CR[0-4]|EFER) ?=([0-9a-f]+)\b")]
    private static partial Regex Register();

    // X00..X30, PC, SP, PSTATE, FPCR, FPSR: 1-16 hex digits; Q00..Q31 and Z00..Z31: doublewords joined by ':' (at most
    // 32 of them, a 2048-bit SVE vector).
    // QEMU 7.2 aarch64_cpu_dump_state with a vector length above 256 bits: "Z%02d[%x-%x]=" and then "   [%x-%x]=", four
    // doublewords each.
    [GeneratedRegex(@"^\s*(?:Z(?<v>[012][0-9]|3[01]))?\[(?<hi>[0-9a-f]{1,2})-(?<lo>[0-9a-f]{1,2})\]=(?<value>(?:[0-9a-f]{16}:){3}[0-9a-f]{16})\s*$")]
    private static partial Regex Arm64SveChunk();

    [GeneratedRegex(@"(?<![A-Za-z0-9_])(?<name>X(?<x>30|[012][0-9])|PC|SP|PSTATE|FPCR|FPSR|(?<vec>[QZ])(?<v>[012][0-9]|3[01]))=(?<value>(?:[0-9a-f]{16}:){0,31}[0-9a-f]{1,16})(?![0-9a-f:])")]
    private static partial Regex Arm64Register();
}
