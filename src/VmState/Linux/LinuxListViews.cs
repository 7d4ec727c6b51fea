using System.Globalization;
using VmState.Views;

namespace VmState.Linux;

/// <summary>
/// The list views of a Linux guest, as <c>vmstate ps</c>, <c>modules</c>, <c>netdev</c>, <c>maps</c>, <c>dmesg</c>
/// and <c>symbols</c> show them: the fields of each row (their names are the JSON keys) and the text table.
/// </summary>
public static class LinuxListViews
{
    private static readonly ListView<LinuxProcess> s_processes = ProcessView(threads: false);
    private static readonly ListView<LinuxProcess> s_threads = ProcessView(threads: true);
    private static readonly ListView<KernelLogRecord> s_log = KernelLogView(showLevel: false);
    private static readonly ListView<KernelLogRecord> s_logWithLevel = KernelLogView(showLevel: true);
    private static readonly ListView<SymbolMatch> s_symbols = SymbolView(byAddress: false);
    private static readonly ListView<SymbolMatch> s_symbolsByAddress = SymbolView(byAddress: true);

    /// <summary>
    /// Processes (<see cref="LinuxGuest.Processes"/>): pid, ppid, uid, state, start time, name (as the guest's /proc shows it) and command line,
    /// with <paramref name="threads"/> the thread-group id (PID) and thread id (TID) of every thread.
    /// </summary>
    public static ListView<LinuxProcess> Processes(bool threads) => threads ? s_threads : s_processes;

    /// <summary>Loaded modules (<see cref="LinuxGuest.Modules"/>), as <c>/proc/modules</c>: name, size, references, state, base.</summary>
    public static ListView<LinuxModule> Modules { get; } = new(
        [
            new("name", FieldKind.Text, m => m.Name),
            new("size", FieldKind.Integer, m => m.Size),
            new("references", FieldKind.Integer, m => m.References),
            new("state", FieldKind.Text, m => m.State),
            new("base", FieldKind.Hex, m => m.Base),
            new("symbols", FieldKind.Integer, m => m.SymbolCount),
            new("module", FieldKind.Hex, m => m.Address),
        ],
        [
            new("NAME", -24, m => m.Name),
            new("SIZE", 7, m => Dec(m.Size)),
            new("REFS", 5, m => Dec(m.References)),
            new("STATE", -8, m => m.State),
            new("BASE", 0, m => Hex(m.Base)),
        ]);

    /// <summary>Network devices (<see cref="LinuxGuest.NetDevices"/>), like <c>ip link</c>: index, name, MAC, state, MTU, flags.</summary>
    public static ListView<LinuxNetDevice> NetDevices { get; } = new(
        [
            new("name", FieldKind.Text, d => d.Name),
            new("ifindex", FieldKind.Integer, d => d.IfIndex),
            new("mac", FieldKind.Text, d => d.Mac),
            new("permanentMac", FieldKind.Text, d => d.PermanentMac),
            new("flags", FieldKind.Hex, d => (ulong)d.Flags),
            new("up", FieldKind.Boolean, d => d.Up),
            new("mtu", FieldKind.Integer, d => d.Mtu),
            new("netDevice", FieldKind.Hex, d => d.Address),
        ],
        [
            new("IDX", 3, d => Dec(d.IfIndex)),
            new("NAME", -10, d => d.Name),
            new("MAC", -17, d => d.Mac),
            new("STATE", -5, d => d.Up ? "UP" : "DOWN"),
            new("MTU", 5, d => Dec(d.Mtu)),
            new("FLAGS", 0, d => Hex(d.Flags)),
        ]);

    /// <summary>A process's mappings (<see cref="LinuxGuest.Maps"/>); the text is <c>/proc/PID/maps</c>'s (<see cref="LinuxVma.Format"/>).</summary>
    public static ListView<LinuxVma> Maps { get; } = new(
        [
            new("start", FieldKind.Hex, v => v.Start),
            new("end", FieldKind.Hex, v => v.End),
            new("perms", FieldKind.Text, v => v.Permissions),
            new("flags", FieldKind.Hex, v => v.Flags),
            new("offset", FieldKind.Hex, v => v.Offset),
            new("dev", FieldKind.Text, v => $"{v.Major:x2}:{v.Minor:x2}"),
            new("inode", FieldKind.Integer, v => v.Inode),
            new("name", FieldKind.Text, v => v.Name),
            new("vma", FieldKind.Hex, v => v.Address),
        ],
        [new(null, 0, v => v.Format())]);

    /// <summary>
    /// Kernel log records (<see cref="LinuxGuest.KernelLog"/>); the text is <c>dmesg</c>'s, with
    /// <paramref name="showLevel"/> prefixed by facility and level as <c>dmesg -x</c> does.
    /// </summary>
    public static ListView<KernelLogRecord> KernelLog(bool showLevel) => showLevel ? s_logWithLevel : s_log;

    /// <summary>
    /// Kernel symbols (<see cref="LinuxGuest.FindSymbols"/>), as <c>/proc/kallsyms</c> lists them (module symbols
    /// marked <c>[module]</c>); with <paramref name="byAddress"/>, an address's symbol and offset
    /// (<see cref="LinuxGuest.SymbolAt"/>).
    /// </summary>
    public static ListView<SymbolMatch> Symbols(bool byAddress) => byAddress ? s_symbolsByAddress : s_symbols;

    private static ListView<LinuxProcess> ProcessView(bool threads)
    {
        ListColumn<LinuxProcess>[] ids = threads
            ? [new("PID", 7, p => Dec(p.Tgid)), new("TID", 6, p => Dec(p.Pid))]
            : [new("PID", 7, p => Dec(p.Pid))];
        return new(
            [
                new("pid", FieldKind.Integer, p => p.Pid),
                new("tgid", FieldKind.Integer, p => p.Tgid),
                new("ppid", FieldKind.Integer, p => p.Ppid),
                new("uid", FieldKind.Integer, p => p.Uid),
                new("gid", FieldKind.Integer, p => p.Gid),
                new("state", FieldKind.Text, p => p.State.ToString()),
                new("name", FieldKind.Text, p => p.Name),
                new("comm", FieldKind.Text, p => p.Comm),
                new("kernelThread", FieldKind.Boolean, p => p.IsKernelThread),
                new("threads", FieldKind.Integer, p => p.Threads),
                new("startTimeNs", FieldKind.Integer, p => p.StartTimeNs),
                new("cmdline", FieldKind.Text, p => p.Cmdline),
                new("task", FieldKind.Hex, p => p.TaskAddress),
            ],
            [
                .. ids,
                new("PPID", 6, p => Dec(p.Ppid)),
                new("UID", 6, p => Dec(p.Uid)),
                new("S", 0, p => p.State.ToString()),
                new("START", 8, p => (p.StartTimeNs / 1e9).ToString("F2", CultureInfo.InvariantCulture)),
                new("COMM", -16, p => p.Name),
                new("COMMAND", 0, p => p.Cmdline ?? (p.IsKernelThread ? $"[{p.Name}]" : string.Empty)),
            ]);
    }

    private static ListView<KernelLogRecord> KernelLogView(bool showLevel) => new(
        [
            new("seq", FieldKind.Integer, r => r.Sequence),
            new("timestamp_ns", FieldKind.Integer, r => r.TimestampNs),
            new("level", FieldKind.Integer, r => r.Level),
            new("level_name", FieldKind.Text, r => r.LevelName),
            new("facility", FieldKind.Integer, r => r.Facility),
            new("facility_name", FieldKind.Text, r => r.FacilityName),
            new("caller", FieldKind.Text, r => r.Caller),
            new("text", FieldKind.Text, r => r.Text),
        ],
        [
            new(null, 0, showLevel
                ? r => string.Create(CultureInfo.InvariantCulture, $"{r.FacilityName ?? Dec(r.Facility),-6} :{r.LevelName,-6}: {r.Format()}")
                : r => r.Format()),
        ]);

    private static ListView<SymbolMatch> SymbolView(bool byAddress)
    {
        List<ListField<SymbolMatch>> fields =
        [
            new("name", FieldKind.Text, m => m.Symbol.Name),
            new("address", FieldKind.Hex, m => m.Symbol.Address),
            new("type", FieldKind.Text, m => m.Symbol.Type.ToString()),
            new("module", FieldKind.Text, m => m.Module, omitWhenNull: true),
        ];
        if (byAddress)
        {
            fields.Add(new("offset", FieldKind.Hex, m => m.Offset));
        }

        return new(fields, [new(null, 0, byAddress ? SymbolAtText : SymbolText)]);
    }

    private static string SymbolText(SymbolMatch m) => m.Module is string module
        ? string.Create(CultureInfo.InvariantCulture, $"{m.Symbol.Address:x16} {m.Symbol.Type} {m.Symbol.Name}\t[{module}]")
        : string.Create(CultureInfo.InvariantCulture, $"{m.Symbol.Address:x16} {m.Symbol.Type} {m.Symbol.Name}");

    private static string SymbolAtText(SymbolMatch m) =>
        string.Create(CultureInfo.InvariantCulture, $"{m.Address:x16} {m.Symbol.Name}+0x{m.Offset:x} ({m.Symbol.Type}, symbol at {m.Symbol.Address:x16})");

    private static string Dec<TNumber>(TNumber n)
        where TNumber : IFormattable => n.ToString(null, CultureInfo.InvariantCulture);

    private static string Hex(ulong v) => "0x" + v.ToString("x", CultureInfo.InvariantCulture);
}
