using System.Buffers.Binary;
using System.Globalization;
using VmState.History;
using VmState.Linux;

namespace VmState.Replay;

/// <summary>
/// A question about a replay at an instruction count, for <see cref="ReplayFinder"/>: its answer is a state (a short
/// text), and the finder looks for the counts where the state changes. A yes/no predicate
/// (<see cref="IsBoolean"/>) has the states <see cref="True"/> and <see cref="False"/>.
/// </summary>
public abstract class ReplayPredicate
{
    /// <summary>The state of a yes/no predicate that holds.</summary>
    public const string True = "true";

    /// <summary>The state of a yes/no predicate that does not hold (also: the guest could not be read to tell).</summary>
    public const string False = "false";

    /// <summary>What the predicate asks, for messages.</summary>
    public abstract string Description { get; }

    /// <summary>True for a yes/no predicate (states <see cref="True"/> and <see cref="False"/>).</summary>
    public virtual bool IsBoolean => true;

    /// <summary>A predicate that holds while a process with this pid, comm or /proc name exists.</summary>
    public static ReplayPredicate Process(string nameOrPid) => new ProcessPredicate(nameOrPid);

    /// <summary>
    /// A predicate that holds while memory from <paramref name="address"/> (to <paramref name="end"/>, exclusive, when
    /// given: anywhere in the range; else exactly at the address) holds <paramref name="bytes"/>: guest-physical memory, or
    /// kernel-virtual addresses (<paramref name="physical"/> false) through the guest kernel's page tables.
    /// </summary>
    public static ReplayPredicate Bytes(byte[] bytes, bool physical, ulong address, ulong? end) => new BytesPredicate(bytes, physical, address, end);

    /// <summary>
    /// The value of the kernel variable <paramref name="symbol"/> (<paramref name="size"/> bytes, little-endian): a
    /// yes/no predicate "equals <paramref name="equals"/>" when given, else the value itself (each change is a transition).
    /// </summary>
    public static ReplayPredicate Symbol(string symbol, int size, ulong? equals) => new SymbolPredicate(symbol, size, equals);

    /// <summary>The state at a point of the index, or null when the index does not hold the answer (the finder then replays to the points).</summary>
    internal virtual string? FromIndex(ReplayIndexPoint point) => null;

    /// <summary>The state at power-on (instruction 0) when known without reading the guest, else null.</summary>
    internal virtual string? AtPowerOn => null;

    /// <summary>The state of the replay paused now.</summary>
    internal abstract Task<string> EvaluateAsync(ReplayProbe probe, CancellationToken cancellationToken);

    private static string Bool(bool b) => b ? True : False;

    private sealed class ProcessPredicate(string nameOrPid) : ReplayPredicate
    {
        public override string Description => $"process {nameOrPid} exists";

        // No kernel runs at power-on, so no process exists.
        internal override string? AtPowerOn => False;

        internal override string? FromIndex(ReplayIndexPoint point) =>
            Bool(point.View.KernelError is null && point.View.Processes.Any(p => p.Matches(nameOrPid)));

        internal override async Task<string> EvaluateAsync(ReplayProbe probe, CancellationToken cancellationToken)
        {
            LinuxKernel? kernel = await probe.KernelAsync(cancellationToken).ConfigureAwait(false);
            if (kernel is null)
            {
                return False;
            }

            try
            {
                foreach (LinuxProcess p in ProcessList.Read(kernel, threads: false, cmdline: false))
                {
                    if (new HistoryProcess(p.Tgid, p.Ppid, p.Uid, p.Comm, p.Name, p.StartTimeNs, p.IsKernelThread).Matches(nameOrPid))
                    {
                        return True;
                    }
                }
            }
            catch (VmStateException)
            {
                // The task list in the middle of an update (an instruction count inside list_add): not seen.
            }

            return False;
        }
    }

    private sealed class BytesPredicate(byte[] bytes, bool physical, ulong address, ulong? end) : ReplayPredicate
    {
        private const int MaxRange = 64 << 20;

        public override string Description => string.Create(CultureInfo.InvariantCulture,
            $"{(physical ? "physical" : "kernel-virtual")} memory {(end is ulong e ? $"0x{address:x}..0x{e:x} contains" : $"at 0x{address:x} holds")} {Convert.ToHexStringLower(bytes)}");

        internal override async Task<string> EvaluateAsync(ReplayProbe probe, CancellationToken cancellationToken)
        {
            ulong length = end is ulong e && e > address ? Math.Min(e - address + (ulong)bytes.Length - 1, MaxRange) : (ulong)bytes.Length;
            var buffer = new byte[length];
            int n;
            if (physical)
            {
                n = probe.Memory.Read(address, buffer);
            }
            else
            {
                LinuxKernel? kernel = await probe.KernelAsync(cancellationToken).ConfigureAwait(false);
                if (kernel is null)
                {
                    return False;
                }

                try
                {
                    n = kernel.Read(address, buffer);
                }
                catch (VmStateException)
                {
                    return False;
                }
            }

            ReadOnlySpan<byte> got = buffer.AsSpan(0, n);
            return Bool(end is null ? got.SequenceEqual(bytes) : got.IndexOf(bytes) >= 0);
        }
    }

    private sealed class SymbolPredicate(string symbol, int size, ulong? equals) : ReplayPredicate
    {
        public override string Description => equals is ulong v ? $"{symbol} == 0x{v:x}" : $"the value of {symbol}";

        public override bool IsBoolean => equals is not null;

        internal override async Task<string> EvaluateAsync(ReplayProbe probe, CancellationToken cancellationToken)
        {
            LinuxKernel? kernel = await probe.KernelAsync(cancellationToken).ConfigureAwait(false);
            Span<byte> raw = stackalloc byte[8];
            raw.Clear();
            if (kernel is null || !kernel.Symbols.TryGetAddress(symbol, out ulong at))
            {
                return equals is null ? "unreadable" : False;
            }

            int n;
            try
            {
                n = kernel.Read(at, raw[..size]);
            }
            catch (VmStateException)
            {
                n = 0;
            }

            if (n < size)
            {
                return equals is null ? "unreadable" : False;
            }

            ulong value = BinaryPrimitives.ReadUInt64LittleEndian(raw);
            return equals is ulong want ? Bool(value == want) : string.Create(CultureInfo.InvariantCulture, $"0x{value:x}");
        }
    }
}
