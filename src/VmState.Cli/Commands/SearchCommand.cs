using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using VmState.Arch.X86;
using VmState.Memory;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate search PATTERN SNAPSHOT|--qmp SOCK [--hex|--string] [--pid N] [--max N] [--json]</c>: every
/// guest-physical address where a byte pattern occurs (all RAM, every core, <see cref="PhysicalMemorySearch"/>), or
/// with --pid every virtual address in that process's user memory with the physical address behind it. Exit code 0
/// when something was found, 1 when not (as grep).
/// </summary>
internal static class SearchCommand
{
    /// <summary>Bytes of context shown after each hit (printable ASCII; anything else as '.').</summary>
    private const int ContextBytes = 32;

    /// <summary>The top of the x86-64 user half: a process's own mappings, not the kernel's, which every process shares.</summary>
    private const ulong UserTop = 0x0000_7fff_ffff_ffffUL;
    private const ulong Arm64LowerHalfTop = (1UL << 55) - 1;   // TTBR0_EL1 covers addresses with bit 55 clear

    /// <summary>Guests at least this large show progress on a terminal's stderr.</summary>
    private const ulong ProgressThreshold = 256UL << 20;

    public static Command Create()
    {
        var pattern = new Argument<string>("PATTERN") { Description = "the bytes to find: text (default, UTF-8) or, with --hex, hex digits (spaces allowed), 1 to 4096 bytes" };
        var hex = new Option<bool>("--hex") { Description = "PATTERN is hex digits, e.g. 'de ad be ef'" };
        var text = new Option<bool>("--string") { Description = "PATTERN is text, searched as its UTF-8 bytes (the default)" };
        var pid = new Option<int?>("--pid", "-p") { Description = "only this Linux guest process's user memory, reported by virtual address (a match that crosses into a page that is not physically next to it is not found)" };
        var max = new Option<int>("--max") { Description = "stop after this many hits (default 1000)", DefaultValueFactory = _ => 1000 };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("search", "Find every address where a byte pattern occurs in guest memory (all RAM, or one process's memory)");
        command.Arguments.Add(pattern);
        var input = new KernelInput(command);
        command.Options.Add(hex);
        command.Options.Add(text);
        command.Options.Add(pid);
        command.Options.Add(max);
        command.Options.Add(json);
        command.SetAction((r, ct) => Task.FromResult(KernelInput.Run(() =>
        {
            if (r.GetValue(hex) && r.GetValue(text))
            {
                throw new ArgumentException("give --hex or --string, not both");
            }

            byte[] needle = r.GetValue(hex) ? ParseHex(r.GetValue(pattern)!) : Encoding.UTF8.GetBytes(r.GetValue(pattern)!);
            if (needle.Length is 0 or > PhysicalMemoryScan.PageSize)
            {
                throw new ArgumentException($"PATTERN is {needle.Length} bytes: expected 1 to {PhysicalMemoryScan.PageSize}");
            }

            int maxHits = r.GetValue(max);
            if (maxHits < 1)
            {
                throw new ArgumentException($"--max {maxHits}: expected at least 1");
            }

            int? processId = r.GetValue(pid);
            using Vm vm = input.Open(r);
            IPhysicalMemory memory = vm.Machine.Memory;
            List<VirtualMapping>? mappings = null;
            IReadOnlyList<MemoryRange>? ranges = null;
            if (processId is int p)
            {
                if (vm.Machine.Architecture == VmState.Arch.CpuArchitecture.Arm64)
                {
                    // The lower half, TTBR0_EL1: the process's own tables.
                    mappings = [.. vm.Linux.Arm64ProcessAddressSpace(p).Mappings(0, Arm64LowerHalfTop).Select(m => new VirtualMapping(m.VirtualAddress, m.PhysicalAddress, m.Size, m.Writable, m.User, m.UserExecuteNever))];
                }
                else
                {
                    AddressSpace space = vm.Linux.ProcessAddressSpace(p);
                    mappings = [.. space.Mappings(0, UserTop)];
                }

                ranges = [.. mappings.Select(m => new MemoryRange(m.PhysicalAddress, m.Size, $"pid {p}"))];
            }

            var scanned = new PhysicalMemoryScan(memory, ranges);
            ulong total = scanned.TotalBytes;
            using ProgressLine? progress = total >= ProgressThreshold && !Console.IsErrorRedirected && !r.GetValue(json) ? new ProgressLine(total) : null;
            var clock = Stopwatch.StartNew();
            IReadOnlyList<ulong> found = PhysicalMemorySearch.Find(memory, needle, maxHits, ranges, cancellationToken: ct, progress: progress);
            progress?.Finish();
            var hits = new List<(ulong Physical, ulong? Virtual)>();
            foreach (ulong pa in found)
            {
                if (mappings is null)
                {
                    hits.Add((pa, null));
                    continue;
                }

                // A physical page may be mapped at several virtual addresses of the process: each is a hit.
                foreach (VirtualMapping m in mappings)
                {
                    if (pa >= m.PhysicalAddress && pa - m.PhysicalAddress < m.Size)
                    {
                        hits.Add((pa, m.VirtualAddress + (pa - m.PhysicalAddress)));
                    }
                }
            }

            if (mappings is not null)
            {
                hits.Sort((a, b) => a.Virtual!.Value.CompareTo(b.Virtual!.Value));
            }

            bool truncated = found.Count >= maxHits;
            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w =>
                {
                    w.WriteStartObject();
                    w.WriteString("pattern", Convert.ToHexStringLower(needle));
                    if (processId is int id)
                    {
                        w.WriteNumber("pid", id);
                    }

                    w.WriteNumber("bytesSearched", total);
                    w.WriteBoolean("truncated", truncated);
                    w.WriteStartArray("hits");
                    foreach ((ulong pa, ulong? va) in hits)
                    {
                        w.WriteStartObject();
                        w.WriteString("physical", $"0x{pa:x}");
                        if (va is ulong v)
                        {
                            w.WriteString("virtual", $"0x{v:x}");
                        }

                        w.WriteEndObject();
                    }

                    w.WriteEndArray();
                    w.WriteEndObject();
                });
            }
            else
            {
                byte[] context = new byte[ContextBytes];
                if (mappings is not null && hits.Count > 0)
                {
                    Console.WriteLine($"{"VIRTUAL",-18}  {"PHYSICAL",-18}  BYTES");
                }

                foreach ((ulong pa, ulong? va) in hits)
                {
                    int n = memory.Read(pa, context);
                    string shown = Printable(context.AsSpan(0, n));
                    Console.WriteLine(va is ulong v ? $"0x{v:x16}  0x{pa:x16}  {shown}" : $"0x{pa:x16}  {shown}");
                }

                string size = total >= 1UL << 20 ? $"{total >> 20} MiB" : $"{total >> 10} KiB";
                string where = processId is int id ? $"pid {id}'s {size} of user memory" : $"{size} of guest RAM";
                Console.Error.WriteLine($"{hits.Count} hit{(hits.Count == 1 ? "" : "s")} in {where} ({clock.Elapsed.TotalSeconds.ToString("F2", CultureInfo.InvariantCulture)} s){(truncated ? $"; stopped at --max {maxHits}" : "")}");
            }

            return hits.Count > 0 ? 0 : 1;
        })));
        return command;
    }

    /// <summary>Hex digits, with spaces, colons or a 0x prefix allowed between bytes, to bytes.</summary>
    internal static byte[] ParseHex(string text)
    {
        var digits = new StringBuilder();
        foreach (string part in text.Split([' ', ':', '\t'], StringSplitOptions.RemoveEmptyEntries))
        {
            digits.Append(part.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? part[2..] : part);
        }

        string s = digits.ToString();
        if (s.Length % 2 != 0 || !s.All(char.IsAsciiHexDigit))
        {
            throw new ArgumentException($"PATTERN '{text}' is not hex bytes (pairs of hex digits)");
        }

        return Convert.FromHexString(s);
    }

    /// <summary>Guest bytes as text that cannot reach the terminal as control sequences: printable ASCII, else '.'.</summary>
    private static string Printable(ReadOnlySpan<byte> bytes)
    {
        var s = new StringBuilder(bytes.Length);
        foreach (byte b in bytes)
        {
            s.Append(b is >= 0x20 and < 0x7f ? (char)b : '.');
        }

        return s.ToString();
    }

    /// <summary>A progress line on the terminal's stderr, redrawn at most every 200 ms from the scan's workers.</summary>
    private sealed class ProgressLine(ulong total) : IProgress<ulong>, IDisposable
    {
        private readonly Lock _gate = new();
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private ulong _done;
        private long _lastDraw = -1000;
        private bool _drawn;

        public void Report(ulong value)
        {
            ulong done = Interlocked.Add(ref _done, value);
            long now = _clock.ElapsedMilliseconds;
            if (now - Volatile.Read(ref _lastDraw) < 200)
            {
                return;
            }

            lock (_gate)
            {
                if (now - _lastDraw < 200)
                {
                    return;
                }

                _lastDraw = now;
                _drawn = true;
                // Our own text, not the guest's: written raw so the carriage return redraws the line.
                TerminalText.RawError.Write($"\rsearching: {100.0 * done / total,5:F1}% of {total >> 20} MiB");
                TerminalText.RawError.Flush();
            }
        }

        public void Finish() => Dispose();

        public void Dispose()
        {
            lock (_gate)
            {
                if (_drawn)
                {
                    TerminalText.RawError.Write("\r\u001b[K");
                    TerminalText.RawError.Flush();
                    _drawn = false;
                }
            }
        }
    }
}
