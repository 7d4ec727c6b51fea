using VmState.Linux;
using VmState.Machine;

namespace VmState.History;

/// <summary>Computes a capture's index (<see cref="HistoryCaptureIndex"/>) from its machine state through the Linux layer.</summary>
internal static class CaptureIndexBuilder
{
    /// <summary>
    /// Reads processes, modules, network devices and the kernel log of <paramref name="machine"/>; the log lines kept
    /// are those after <paramref name="previous"/>'s (all of them for the first capture or after a reboot). A guest
    /// whose kernel cannot be read gets an index that says why, not an exception.
    /// </summary>
    public static HistoryCaptureIndex Build(int number, MachineState machine, HistoryCaptureIndex? previous, TimeSpan? pause, TimeSpan? wall)
    {
        LinuxKernel kernel;
        try
        {
            kernel = KernelLocator.Locate(machine);
        }
        catch (VmStateException e)
        {
            return new HistoryCaptureIndex(number, pause, wall, e.Message, 0, [], [], [], 0, 0, 0, []);
        }

        return Build(number, kernel, previous, pause, wall);
    }

    /// <summary>The same from a kernel already located (a paused replay reads one kernel at many instruction counts).</summary>
    public static HistoryCaptureIndex Build(int number, LinuxKernel kernel, HistoryCaptureIndex? previous, TimeSpan? pause, TimeSpan? wall)
    {
        try
        {
            var processes = new List<HistoryProcess>();
            foreach (LinuxProcess p in ProcessList.Read(kernel, threads: false, cmdline: false))
            {
                processes.Add(new HistoryProcess(p.Tgid, p.Ppid, p.Uid, p.Comm, p.Name, p.StartTimeNs, p.IsKernelThread));
            }

            var modules = new List<HistoryModule>();
            foreach (LinuxModule m in ModuleList.Read(kernel))
            {
                modules.Add(new HistoryModule(m.Name, m.Base, m.Size));
            }

            var devices = new List<HistoryNetDevice>();
            foreach (LinuxNetDevice d in NetDeviceList.Read(kernel))
            {
                devices.Add(new HistoryNetDevice(d.Name, d.IfIndex, d.Mac, d.Flags, d.Mtu));
            }

            IReadOnlyList<KernelLogRecord> log = KernelLog.Read(kernel);
            ulong first = log.Count > 0 ? log[0].Sequence : 0;
            ulong next = 0;
            foreach (KernelLogRecord r in log)
            {
                next = Math.Max(next, r.Sequence + 1);
            }

            bool continues = previous is { KernelError: null } && previous.KernelTextAddress == kernel.TextAddress && next >= previous.LogNext;
            ulong after = continues ? previous!.LogNext : 0;
            var lines = new List<HistoryLogLine>();
            ulong last = 0;
            foreach (KernelLogRecord r in log)
            {
                // Sequence numbers increase through the ring; a record out of order is corrupt data, not a new line.
                if (r.Sequence >= after && (lines.Count == 0 || r.Sequence > last))
                {
                    lines.Add(new HistoryLogLine(r.Sequence, r.TimestampNs, r.Level & 7, r.Text));
                    last = r.Sequence;
                }
            }

            return new HistoryCaptureIndex(number, pause, wall, null, kernel.TextAddress, processes, modules, devices, Math.Min(first, next), next, after, lines);
        }
        catch (VmStateException e)
        {
            return new HistoryCaptureIndex(number, pause, wall, $"reading the kernel's lists: {e.Message}", 0, [], [], [], 0, 0, 0, []);
        }
    }
}
