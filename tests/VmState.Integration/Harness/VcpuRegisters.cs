using System.Globalization;
using System.Text.RegularExpressions;

namespace VmState.Integration.Harness;

/// <summary>
/// Registers of one vCPU as QEMU's HMP "info registers -a" prints them (QEMU 7.2 target/i386/cpu-dump.c,
/// long mode: "RAX=%016x RBX=…", "RIP=%016x RFL=%08x", "CR0=%08x CR2=%016x CR3=%016x CR4=%08x").
/// </summary>
public sealed partial record VcpuRegisters(int Index, IReadOnlyDictionary<string, ulong> Values)
{
    public ulong Rip => Values["RIP"];

    public ulong Rsp => Values["RSP"];

    public ulong Cr0 => Values["CR0"];

    public ulong Cr3 => Values["CR3"];

    public ulong Cr4 => Values["CR4"];

    /// <summary>Parses the text of "info registers -a" (one "CPU#n" block per vCPU).</summary>
    public static IReadOnlyList<VcpuRegisters> ParseAll(string text)
    {
        var result = new List<VcpuRegisters>();
        Dictionary<string, ulong>? current = null;
        int index = -1;
        foreach (string raw in text.Split('\n'))
        {
            string line = raw.TrimEnd('\r');
            Match cpu = CpuHeader().Match(line);
            if (cpu.Success)
            {
                if (current is not null)
                {
                    result.Add(new VcpuRegisters(index, current));
                }

                index = int.Parse(cpu.Groups[1].Value, CultureInfo.InvariantCulture);
                current = new Dictionary<string, ulong>(StringComparer.Ordinal);
                continue;
            }

            if (current is null)
            {
                continue;
            }

            foreach (Match m in Register().Matches(line))
            {
                current.TryAdd(m.Groups[1].Value, ulong.Parse(m.Groups[2].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture));
            }
        }

        if (current is not null)
        {
            result.Add(new VcpuRegisters(index, current));
        }

        return result;
    }

    [GeneratedRegex(@"^CPU#(\d+)")]
    private static partial Regex CpuHeader();

    [GeneratedRegex(@"\b(R[A-Z0-9]{1,2}|RIP|RFL|CR[0-4]|EFER) ?=([0-9a-fA-F]+)\b")]
    private static partial Regex Register();
}
