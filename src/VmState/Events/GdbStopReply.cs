using System.Globalization;

namespace VmState.Events;

/// <summary>
/// A GDB remote stop reply as QEMU 7.2's gdbstub sends it (gdbstub.c <c>gdb_vm_state_change</c>):
/// <c>T05thread:01;</c> for a breakpoint, <c>T05thread:01;watch:ADDR;</c> (or <c>rwatch</c>, <c>awatch</c>) for a
/// watchpoint, <c>T02thread:01;</c> when the VM was paused, <c>S05</c>/<c>W00</c>/<c>X09</c> from other stubs.
/// Thread ids are the vCPU index + 1 (QEMU <c>gdb_get_cpu_index</c>); a multiprocess id <c>pP.T</c> gives its thread.
/// </summary>
/// <param name="Kind">'T' or 'S' (stopped), 'W' (exited), 'X' (terminated by a signal).</param>
/// <param name="Signal">The signal (5 = SIGTRAP for breakpoints and steps, 2 = SIGINT for a pause).</param>
/// <param name="Thread">The thread id, or null when the reply names none.</param>
/// <param name="WatchKind">"watch", "rwatch" or "awatch" for a watchpoint hit, else null.</param>
/// <param name="WatchAddress">The data address of a watchpoint hit, else 0.</param>
public readonly record struct GdbStopReply(char Kind, int Signal, int? Thread, string? WatchKind, ulong WatchAddress)
{
    /// <summary>True for a stop by SIGTRAP (breakpoint, watchpoint, single step).</summary>
    public bool IsTrap => Kind is 'T' or 'S' && Signal == 5;

    /// <summary>The vCPU index (thread id - 1), or null.</summary>
    public int? Vcpu => Thread is > 0 ? Thread - 1 : null;

    /// <summary>
    /// Parses a stop reply payload (without <c>$</c> and checksum). False for anything that is not one (an
    /// <c>OK</c>, an error, a malformed packet); never throws.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<char> payload, out GdbStopReply reply)
    {
        reply = default;
        if (payload.Length < 3 || payload[0] is not ('T' or 'S' or 'W' or 'X') || !TryHex(payload.Slice(1, 2), out ulong signal))
        {
            return false;
        }

        char kind = payload[0];
        int? thread = null;
        string? watchKind = null;
        ulong watchAddress = 0;
        ReadOnlySpan<char> rest = payload[3..];
        if (kind != 'T')
        {
            // S, W and X carry at most ";process:PID" (W/X), which says nothing about vCPUs.
            reply = new GdbStopReply(kind, (int)signal, null, null, 0);
            return true;
        }

        while (!rest.IsEmpty)
        {
            int end = rest.IndexOf(';');
            ReadOnlySpan<char> pair = end < 0 ? rest : rest[..end];
            rest = end < 0 ? [] : rest[(end + 1)..];
            int colon = pair.IndexOf(':');
            if (colon <= 0)
            {
                return false;
            }

            ReadOnlySpan<char> name = pair[..colon];
            ReadOnlySpan<char> value = pair[(colon + 1)..];
            if (name.SequenceEqual("thread"))
            {
                // Multiprocess form pP.T: the thread is after the dot.
                int dot = value.IndexOf('.');
                if (dot >= 0)
                {
                    value = value[(dot + 1)..];
                }

                if (!TryHex(value, out ulong t) || t > int.MaxValue)
                {
                    return false;
                }

                thread = (int)t;
            }
            else if (name.SequenceEqual("watch") || name.SequenceEqual("rwatch") || name.SequenceEqual("awatch"))
            {
                if (!TryHex(value, out watchAddress))
                {
                    return false;
                }

                watchKind = name.ToString();
            }

            // Other pairs (register values "NN:VALUE", "core:N", "swbreak:") are allowed and not needed here.
        }

        reply = new GdbStopReply(kind, (int)signal, thread, watchKind, watchAddress);
        return true;
    }

    private static bool TryHex(ReadOnlySpan<char> text, out ulong value)
    {
        value = 0;
        return text.Length is > 0 and <= 16 && ulong.TryParse(text, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }
}
