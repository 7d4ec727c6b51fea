using System.Globalization;
using VmState.Live;

namespace VmState.Replay;

/// <summary>
/// Turns the user's QEMU command line into the one a recording or a replay runs, the same devices in both (QEMU's
/// record/replay needs identical device sets: <c>docs/system/replay.rst</c>), and refuses what record/replay cannot
/// reproduce. What is added:
/// <list type="bullet">
/// <item><c>-icount shift=auto,rr=record|replay,rrfile=LOG</c> (a fixed <c>shift=N</c> the user gave is kept).</item>
/// <item>Every disk behind a <c>blkreplay</c> node over a qcow2 overlay of its image (read-only drives directly), so
/// disk completions are replayed at the recorded instruction and the user's image is never written.</item>
/// <item><c>-object filter-replay</c> on every <c>-netdev</c>; <c>-net none</c> when the command line has no
/// network (QEMU's default NIC is a hub NIC no filter can attach to).</item>
/// <item>An orphan qcow2 (no device uses it) that holds the run's snapshots, and two QMP sockets.</item>
/// <item><c>-no-shutdown</c>: a guest power-off stops the VM instead of ending QEMU, so the end is read over QMP.</item>
/// </list>
/// A replay also sends console files (<c>-serial file:</c>, <c>-chardev file</c>) to its own directory and leaves out
/// the user's monitors, gdbstub, VNC and pid file, which would clash with the original VM's.
/// </summary>
public static class ReplayCommandLine
{
    /// <summary>The id of the orphan drive that holds a run's snapshots (the checkpoints of a replay).</summary>
    public const string SnapshotDriveId = "rr-snapshots";

    private static readonly string[] s_refusedDevicePrefixes = ["vfio-", "usb-host", "usb-redir", "vhost-", "ivshmem"];

    /// <summary>
    /// The disks of <paramref name="user"/> in command-line order (file, format when given, read-only), after checking
    /// the whole command line can be recorded.
    /// </summary>
    /// <exception cref="ArgumentException">Something record/replay does not support, named with what to do instead.</exception>
    public static IReadOnlyList<(string File, string? Format, bool ReadOnly)> Check(QemuArguments user)
    {
        ArgumentNullException.ThrowIfNull(user);
        var drives = new List<(string, string?, bool)>();
        foreach (QemuArgument o in user.Options)
        {
            switch (o.Name)
            {
                case "enable-kvm":
                    throw Refuse("-enable-kvm", "QEMU's record/replay runs under TCG only (-icount is not allowed with hardware virtualization)");
                case "accel":
                    if (o.Options("accel").Get("accel") is string a && a != "tcg")
                    {
                        throw Refuse($"-accel {a}", "QEMU's record/replay runs under TCG only; use -accel tcg");
                    }

                    break;
                case "machine" or "M":
                    if (o.Options("type").Get("accel") is string ma && ma != "tcg")
                    {
                        throw Refuse($"-machine accel={ma}", "QEMU's record/replay runs under TCG only");
                    }

                    break;
                case "smp":
                    if (Cpus(o.Options("cpus")) > 1)
                    {
                        throw Refuse($"-smp {o.Value}", "QEMU 7.2 replays one vCPU only (it refuses -smp > 1 in replay mode)");
                    }

                    break;
                case "icount":
                    if (o.Options("shift").Get("rr") is not null)
                    {
                        throw Refuse($"-icount {o.Value}", "vmstate adds rr=, rrfile= itself; leave them out");
                    }

                    break;
                case "snapshot":
                    throw Refuse("-snapshot", "QEMU refuses it with record/replay; vmstate already keeps the images unchanged (each run writes to an overlay)");
                case "loadvm" or "incoming":
                    throw Refuse($"-{o.Name}", "a recording starts at power-on");
                case "daemonize":
                    throw Refuse("-daemonize", "vmstate runs QEMU in the background itself");
                case "nographic":
                    throw Refuse("-nographic", "the console would be the terminal, which QEMU in the background cannot read; use -display none -serial file:PATH");
                case "serial" or "parallel" or "monitor" or "qmp" or "qmp-pretty" when o.Value is "stdio" or "mon:stdio":
                    throw Refuse($"-{o.Name} {o.Value}", "QEMU runs in the background; use a file: or unix: backend");
                case "chardev" when o.Options("backend").Get("backend") == "stdio":
                    throw Refuse($"-chardev {o.Value}", "QEMU runs in the background; use a file or socket backend");
                case "rtc" when o.Options().Get("base") == "localtime":
                    throw Refuse("-rtc base=localtime", "QEMU refuses it with record/replay; use base=utc or a date");
                case "blockdev":
                    throw Refuse("-blockdev", "give disks with -drive (vmstate puts each behind blkreplay with an overlay)");
                case "fda" or "fdb" or "sd" or "mtdblock" or "pflash":
                    throw Refuse($"-{o.Name}", "only IDE and virtio disks are recorded; give disks with -drive if=ide|virtio|none");
                case "net":
                    if (o.Value != "none")
                    {
                        throw Refuse($"-net {o.Value}", "QEMU's replay filter attaches to -netdev only; use -netdev TYPE,id=ID -device NIC,netdev=ID");
                    }

                    break;
                case "nic":
                    if (o.Value != "none")
                    {
                        throw Refuse($"-nic {o.Value}", "use -netdev TYPE,id=ID -device NIC,netdev=ID (QEMU's replay filter needs the netdev's id)");
                    }

                    break;
                case "netdev":
                    {
                        QemuOptionList n = o.Options("type");
                        if (n.Get("id") is null)
                        {
                            throw Refuse($"-netdev {o.Value}", "the netdev needs an id= for its replay filter");
                        }

                        if (n.Get("type") is "vhost-user" or "vhost-vdpa" || n.Get("vhost") == "on")
                        {
                            throw Refuse($"-netdev {o.Value}", "vhost moves packets outside QEMU, where they cannot be recorded");
                        }

                        break;
                    }

                case "device":
                    {
                        string driver = o.Options("driver").Get("driver") ?? string.Empty;
                        if (s_refusedDevicePrefixes.Any(p => driver.StartsWith(p, StringComparison.Ordinal)))
                        {
                            throw Refuse($"-device {driver}", "the device reaches the host or another process outside QEMU's record/replay (passthrough, vhost, shared memory)");
                        }

                        break;
                    }

                case "object":
                    {
                        string type = o.Options("qom-type").Get("qom-type") ?? string.Empty;
                        if (type is "rng-random" or "rng-egd")
                        {
                            throw Refuse($"-object {type}", "its bytes come from the host without being recorded; use rng-builtin (QEMU's default), which is");
                        }

                        if (type.StartsWith("memory-backend-", StringComparison.Ordinal) && o.Options("qom-type").Get("share") == "on")
                        {
                            throw Refuse($"-object {type},share=on", "another process could write guest RAM behind the recording");
                        }

                        break;
                    }

                case "hda" or "hdb" or "hdc" or "hdd" or "cdrom":
                    drives.Add((o.Value!, null, o.Name == "cdrom"));
                    break;
                case "drive":
                    {
                        QemuOptionList d = o.Options();
                        string iface = d.Get("if") ?? "ide";
                        if (iface is not ("ide" or "virtio" or "none"))
                        {
                            throw Refuse($"-drive if={iface}", "only if=ide, if=virtio and if=none (with -device ...,drive=ID) are recorded");
                        }

                        if (d.Get("file") is not string file || file.Length == 0)
                        {
                            throw Refuse($"-drive {o.Value}", "a drive without file= (an empty CD-ROM drive) cannot be put behind blkreplay");
                        }

                        if (iface == "none" && d.Get("id") is null)
                        {
                            throw Refuse($"-drive {o.Value}", "an if=none drive needs an id= for its -device");
                        }

                        drives.Add((file, d.Get("format"), d.Get("readonly") == "on" || d.Get("media") == "cdrom"));
                        break;
                    }
            }
        }

        return drives;
    }

    /// <summary>
    /// The command line of a run of <paramref name="user"/> in <paramref name="mode"/>, with <paramref name="drives"/>
    /// (from <see cref="Check"/>, resolved) reached through their overlays in <see cref="ReplayRunPaths.WorkDirectory"/>.
    /// </summary>
    public static QemuArguments Build(QemuArguments user, ReplayMode mode, ReplayRunPaths paths, IReadOnlyList<ReplayDrive> drives)
    {
        ArgumentNullException.ThrowIfNull(user);
        ArgumentNullException.ThrowIfNull(paths);
        ArgumentNullException.ThrowIfNull(drives);
        bool replay = mode == ReplayMode.Replay;
        var output = new List<QemuArgument>();
        string shift = "auto";
        bool network = false;
        int drive = 0;
        int nextIde = 0;
        var ideTaken = new HashSet<int>();
        int consoles = 0;
        foreach (QemuArgument o in user.Options)
        {
            switch (o.Name)
            {
                case "icount":
                    shift = o.Options("shift").Get("shift") ?? "auto";
                    continue;
                case "qmp" or "qmp-pretty" or "monitor" or "mon" or "gdb" or "s" or "pidfile" or "vnc" or "spice" when replay:
                    continue;
                case "serial" or "parallel" when replay && o.Value is string v && v.StartsWith("file:", StringComparison.Ordinal):
                    output.Add(o with { Value = "file:" + Path.Combine(paths.WorkDirectory, $"{o.Name}{consoles++}.log") });
                    continue;
                case "chardev" when replay && o.Options("backend").Get("backend") == "file":
                    {
                        QemuOptionList c = o.Options("backend");
                        output.Add(o with { Value = c.With("path", Path.Combine(paths.WorkDirectory, $"chardev-{c.Get("id")}.log")).ToString("backend") });
                        continue;
                    }

                case "netdev":
                    {
                        network = true;
                        output.Add(o);
                        string id = o.Options("type").Get("id")!;
                        output.Add(new QemuArgument("object", $"filter-replay,id=rr-filter-{id},netdev={id}"));
                        continue;
                    }

                case "net" or "nic":
                    network = true;
                    output.Add(o);
                    continue;
                case "hda" or "hdb" or "hdc" or "hdd" or "cdrom":
                    {
                        int index = o.Name == "cdrom" ? 2 : o.Name[2] - 'a';
                        string media = o.Name == "cdrom" ? "cdrom" : "disk";
                        output.AddRange(Drive(NextDrive(drives, drive++), QemuOptionList.Parse($"file={o.Value!.Replace(",", ",,", StringComparison.Ordinal)},if=ide,index={index},media={media}"), paths, ideTaken, ref nextIde));
                        continue;
                    }

                case "drive":
                    output.AddRange(Drive(NextDrive(drives, drive++), o.Options(), paths, ideTaken, ref nextIde));
                    continue;
            }

            output.Add(o);
        }

        if (!network && !user.Has("nodefaults"))
        {
            output.Add(new QemuArgument("net", "none"));
        }

        string icount = $"shift={shift},rr={(replay ? "replay" : "record")},rrfile={Escape(paths.Log)}"
            + (replay && paths.StartSnapshot is string start ? $",rrsnapshot={Escape(start)}" : string.Empty);
        output.Add(new QemuArgument("icount", icount));
        output.Add(new QemuArgument("drive", $"file={Escape(paths.SnapshotImage)},if=none,id={SnapshotDriveId},format=qcow2"));
        output.Add(new QemuArgument("no-shutdown", null));
        output.Add(new QemuArgument("qmp", $"unix:{Escape(paths.ControlQmp)},server=on,wait=off"));
        output.Add(new QemuArgument("qmp", $"unix:{Escape(paths.UserQmp)},server=on,wait=off"));
        if (paths.GdbPort is int port)
        {
            output.Add(new QemuArgument("gdb", $"tcp:127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}"));
        }

        if (paths.StartPaused)
        {
            output.Add(new QemuArgument("S", null));
        }

        return user.With(output);
    }

    /// <summary>The node name of <paramref name="drive"/>'s overlay (a writable disk) in a replay.</summary>
    internal static string OverlayNode(ReplayDrive drive) => $"rr-overlay{drive.Index}";

    private static IEnumerable<QemuArgument> Drive(ReplayDrive drive, QemuOptionList d, ReplayRunPaths paths, HashSet<int> ideTaken, ref int nextIde)
    {
        string iface = d.Get("if") ?? "ide";
        string direct = $"rr-direct{drive.Index}";
        string node = iface == "none" ? d.Get("id") ?? throw Refuse($"-drive {d}", "an if=none drive needs an id= for its -device") : $"rr-drive{drive.Index}";
        QemuOptionList image = d;
        foreach (string key in new[] { "if", "id", "index", "bus", "unit", "media", "snapshot", "file", "format", "readonly", "node-name" })
        {
            image = image.Without(key);
        }

        image = drive.ReadOnly
            ? image.With("file", drive.File).With("format", drive.Format).With("readonly", "on")
            : image.With("file", Path.Combine(paths.WorkDirectory, drive.OverlayName)).With("format", "qcow2");
        image = image.With("if", "none").With("id", direct);
        if (!drive.ReadOnly)
        {
            // A name for the overlay's own node: a checkpoint (snapshot-save) names the nodes it saves.
            image = image.With("node-name", OverlayNode(drive));
        }

        var result = new List<QemuArgument>
        {
            new("drive", image.ToString()),
            new("drive", $"driver=blkreplay,if=none,image={direct},id={node}" + (drive.ReadOnly ? ",readonly=on" : string.Empty)),
        };
        if (iface == "virtio")
        {
            result.Add(new QemuArgument("device", $"virtio-blk-pci,drive={node}"));
        }
        else if (iface == "ide")
        {
            int index;
            if (d.Get("index") is string given && int.TryParse(given, NumberStyles.None, CultureInfo.InvariantCulture, out int g) && g is >= 0 and < 4)
            {
                index = g;
            }
            else
            {
                while (ideTaken.Contains(nextIde))
                {
                    nextIde++;
                }

                index = nextIde;
            }

            if (index >= 4 || !ideTaken.Add(index))
            {
                throw Refuse($"-drive {d}", "the IDE controller of the pc machine has four places (index 0-3), each used once");
            }

            string kind = d.Get("media") == "cdrom" ? "ide-cd" : "ide-hd";
            result.Add(new QemuArgument("device", $"{kind},drive={node},bus=ide.{index / 2},unit={index % 2}"));
        }

        return result;
    }

    private static ReplayDrive NextDrive(IReadOnlyList<ReplayDrive> drives, int index) => index < drives.Count
        ? drives[index]
        : throw new ArgumentException($"the command line has more disks than the {drives.Count} the recording describes");

    private static int Cpus(QemuOptionList smp)
    {
        static int Value(QemuOptionList l, string key) =>
            l.Get(key) is string s && int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int v) ? v : 1;

        if (smp.Get("cpus") is not null)
        {
            return Value(smp, "cpus");
        }

        return Value(smp, "sockets") * Value(smp, "dies") * Value(smp, "cores") * Value(smp, "threads");
    }

    private static string Escape(string value) => value.Replace(",", ",,", StringComparison.Ordinal);

    private static ArgumentException Refuse(string what, string why) => new($"cannot record {what}: {why}");
}
