using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using VmState.Editing;
using VmState.Formats.Migration.Devices;
using VmState.IO;
using VmState.Linux;
using VmState.Live;
using VmState.Machine;
using VmState.Snapshots;

namespace VmState.Fork;

/// <summary>
/// Starts clones of a VM from one snapshot: each a QEMU of its own, running from the snapshot's moment, with a qcow2
/// overlay per disk (the images are shared, never written), its own QMP socket and console files, and its own MACs —
/// changed in the NIC device (<see cref="SnapshotEditor.SetMac"/>), in the guest kernel's net_device
/// (<see cref="GuestMacEdit"/>) and in the QEMU command line — so the clones can share a network.
/// </summary>
/// <remarks>
/// The snapshot carries the machine's state, not its QEMU command line, so the caller gives the command line the VM
/// ran with. Per clone it is changed: disks go to overlays, <c>-serial file:</c> and <c>-chardev file</c> to the clone's
/// directory, the user's monitors, gdbstub, VNC and pid file are left out (they would clash between clones), and
/// <c>-daemonize -pidfile -qmp -incoming defer</c> are added. The clone then loads the snapshot with
/// <c>migrate-incoming exec:cat FILE</c> (an edited copy, removed once loaded) and is resumed.
/// </remarks>
public static class VmFork
{
    /// <summary>
    /// Starts <paramref name="count"/> clones named <c>PREFIX-1</c>… in <paramref name="stateDirectory"/> from
    /// <paramref name="snapshot"/> (a migration stream or a qcow2 internal snapshot: anything
    /// <see cref="SnapshotLoader"/> opens and <see cref="SnapshotEditor"/> can write), all at once.
    /// </summary>
    /// <exception cref="ArgumentException">A clone of that name exists, or the command line has what clones cannot share.</exception>
    public static async Task<IReadOnlyList<ForkClone>> StartAsync(string snapshot, IReadOnlyList<string> command, int count, string prefix, string stateDirectory, SnapshotOpenOptions? openOptions = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        ArgumentNullException.ThrowIfNull(command);
        ArgumentNullException.ThrowIfNull(prefix);
        ArgumentNullException.ThrowIfNull(stateDirectory);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, 256);
        if (prefix.Length == 0 || prefix.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')) || prefix[0] == '.')
        {
            throw new ArgumentException($"--prefix \"{prefix}\": use letters, digits, '-', '_' and '.' (not first)");
        }

        QemuArguments user = QemuArguments.Parse(command);
        Check(user);
        string state = Path.GetFullPath(stateDirectory);
        PrivateDirectory.Create(state);
        string[] names = [.. Enumerable.Range(1, count).Select(i => $"{prefix}-{i.ToString(CultureInfo.InvariantCulture)}")];
        foreach (string name in names)
        {
            string dir = Path.Combine(state, name);
            if (System.IO.Directory.Exists(dir))
            {
                throw new ArgumentException($"a clone named {name} exists in {state}; stop it first (vmstate fork --stop --prefix {prefix}) or choose another --prefix");
            }

            if (Path.Combine(dir, "qmp.sock").Length > 107)
            {
                throw new ArgumentException($"the socket path {Path.Combine(dir, "qmp.sock")} is longer than a unix socket allows (107 bytes); use a shorter --dir");
            }
        }

        // Each clone's stream: the snapshot with the clone's MACs, in the devices and in the guest kernel. The kernel
        // is located once for all clones.
        var prepared = new List<(string Name, string Dir, string Stream, IReadOnlyList<ForkMac> Macs)>();
        using (MachineState machine = SnapshotLoader.Open(snapshot, openOptions))
        {
            DeviceState[] nics = [.. machine.Devices.Where(d => d.Decoded.ContainsKey("mac") && (d.IdStr.EndsWith("/e1000", StringComparison.Ordinal) || d.IdStr.EndsWith("/virtio-net", StringComparison.Ordinal)))];
            LinuxGuest? guest = nics.Length > 0 ? new LinuxGuest(() => machine, null) : null;
            var used = new HashSet<string>(nics.Select(n => n.Decoded["mac"]), StringComparer.OrdinalIgnoreCase);
            foreach (string name in names)
            {
                string dir = Path.Combine(state, name);
                PrivateDirectory.Create(dir);
                var editor = new SnapshotEditor(machine);
                var macs = new List<ForkMac>();
                foreach (DeviceState nic in nics)
                {
                    string mac = NewMac(used);
                    GuestMacEdit.SetMac(editor, guest!, nic.Key, MacAddress.Parse(mac));
                    macs.Add(new ForkMac(nic.Key, nic.Decoded["mac"], mac));
                }

                string stream = Path.Combine(dir, "state.mig");
                editor.Save(stream, cancellationToken);
                prepared.Add((name, dir, stream, macs));
            }
        }

        var started = await Task.WhenAll(prepared.Select(p => StartCloneAsync(user, snapshot, p.Name, p.Dir, p.Stream, p.Macs, cancellationToken))).ConfigureAwait(false);
        return started;
    }

    /// <summary>The clones described in <paramref name="stateDirectory"/> (running or not), by name.</summary>
    public static IReadOnlyList<ForkClone> List(string stateDirectory)
    {
        ArgumentNullException.ThrowIfNull(stateDirectory);
        if (!System.IO.Directory.Exists(stateDirectory))
        {
            return [];
        }

        var clones = new List<ForkClone>();
        foreach (string dir in System.IO.Directory.EnumerateDirectories(stateDirectory).Order(StringComparer.Ordinal))
        {
            string file = Path.Combine(dir, ForkClone.FileName);
            if (File.Exists(file))
            {
                clones.Add(ForkClone.Parse(File.ReadAllBytes(file), dir));
            }
        }

        return clones;
    }

    /// <summary>
    /// Stops the clones in <paramref name="stateDirectory"/> whose name starts with <paramref name="prefix"/>-
    /// (every clone when null): QMP quit (SIGKILL after 10 s), then their directories are removed. Returns them.
    /// </summary>
    public static async Task<IReadOnlyList<ForkClone>> StopAsync(string stateDirectory, string? prefix, CancellationToken cancellationToken = default)
    {
        ForkClone[] chosen = [.. List(stateDirectory).Where(c => prefix is null || c.Name.StartsWith(prefix + "-", StringComparison.Ordinal))];
        await Task.WhenAll(chosen.Select(c => StopCloneAsync(c, cancellationToken))).ConfigureAwait(false);
        return chosen;
    }

    private static void Check(QemuArguments user)
    {
        foreach (QemuArgument o in user.Options)
        {
            switch (o.Name)
            {
                case "incoming" or "loadvm" or "daemonize" or "S":
                    throw new ArgumentException($"give the command line the VM was started with, without -{o.Name}: vmstate adds what a clone needs");
                case "nographic":
                    throw new ArgumentException("-nographic puts the console on the terminal, which N clones cannot share; use -display none -serial file:PATH");
                case "blockdev":
                    throw new ArgumentException("give disks with -drive file=... (each clone gets a qcow2 overlay on the image)");
                case "serial" or "parallel" or "monitor" or "qmp" when o.Value is "stdio" or "mon:stdio":
                    throw new ArgumentException($"-{o.Name} {o.Value}: clones run in the background; use file: or unix: backends");
                case "drive" when o.Options().Get("file") is null:
                    throw new ArgumentException($"-drive {o.Value}: a drive without file= cannot be given an overlay");
            }
        }
    }

    private static List<QemuArgument> CloneArguments(QemuArguments user, string dir, IReadOnlyList<ForkMac> macs, Dictionary<string, string> overlays)
    {
        var output = new List<QemuArgument>();
        int consoles = 0;
        var pendingMacs = new List<ForkMac>(macs);
        foreach (QemuArgument o in user.Options)
        {
            switch (o.Name)
            {
                case "qmp" or "qmp-pretty" or "monitor" or "mon" or "gdb" or "s" or "pidfile" or "vnc" or "spice":
                    continue;
                case "serial" or "parallel" when o.Value is string v && v.StartsWith("file:", StringComparison.Ordinal):
                    output.Add(o with { Value = "file:" + Path.Combine(dir, $"{o.Name}{consoles++}.log") });
                    continue;
                case "chardev" when o.Options("backend").Get("backend") == "file":
                    {
                        QemuOptionList c = o.Options("backend");
                        output.Add(o with { Value = c.With("path", Path.Combine(dir, $"chardev-{c.Get("id")}.log")).ToString("backend") });
                        continue;
                    }

                case "hda" or "hdb" or "hdc" or "hdd" or "cdrom":
                    output.Add(new QemuArgument(o.Name, overlays.GetValueOrDefault(o.Value!, o.Value!)));
                    continue;
                case "drive":
                    {
                        QemuOptionList d = o.Options();
                        string file = d.Get("file")!;
                        output.Add(overlays.TryGetValue(file, out string? overlay)
                            ? o with { Value = d.With("file", overlay).With("format", "qcow2").Without("snapshot").ToString() }
                            : o);
                        continue;
                    }

                case "device":
                    {
                        QemuOptionList d = o.Options("driver");
                        string driver = d.Get("driver") ?? string.Empty;
                        string? kind = driver.StartsWith("virtio-net", StringComparison.Ordinal) ? "/virtio-net" : driver.StartsWith("e1000", StringComparison.Ordinal) && !driver.StartsWith("e1000e", StringComparison.Ordinal) ? "/e1000" : null;
                        ForkMac? match = kind is null ? null
                            : pendingMacs.FirstOrDefault(m => d.Get("mac") is string given && string.Equals(given, m.Original, StringComparison.OrdinalIgnoreCase))
                              ?? pendingMacs.FirstOrDefault(m => m.Device.EndsWith(kind, StringComparison.Ordinal) && d.Get("mac") is null);
                        if (match is not null)
                        {
                            pendingMacs.Remove(match);
                            output.Add(o with { Value = d.With("mac", match.Mac).ToString("driver") });
                            continue;
                        }

                        break;
                    }
            }

            output.Add(o);
        }

        output.Add(new QemuArgument("daemonize", null));
        output.Add(new QemuArgument("pidfile", Path.Combine(dir, "qemu.pid")));
        output.Add(new QemuArgument("qmp", $"unix:{Path.Combine(dir, "qmp.sock")},server=on,wait=off"));
        output.Add(new QemuArgument("incoming", "defer"));
        return output;
    }

    private static async Task<ForkClone> StartCloneAsync(QemuArguments user, string snapshot, string name, string dir, string stream, IReadOnlyList<ForkMac> macs, CancellationToken cancellationToken)
    {
        var overlays = new Dictionary<string, string>(StringComparer.Ordinal);
        int n = 0;
        foreach (QemuArgument o in user.Options)
        {
            string? file = o.Name switch
            {
                "drive" when o.Options().Get("readonly") != "on" && o.Options().Get("media") != "cdrom" => o.Options().Get("file"),
                "hda" or "hdb" or "hdc" or "hdd" => o.Value,
                _ => null,
            };
            if (file is not null && !overlays.ContainsKey(file))
            {
                string format = (o.Name == "drive" ? o.Options().Get("format") : null) ?? await QemuImageTool.FormatOfAsync(file, cancellationToken).ConfigureAwait(false);
                string overlay = Path.Combine(dir, $"drive{n++}.qcow2");
                await QemuImageTool.CreateOverlayAsync(overlay, file, format, cancellationToken).ConfigureAwait(false);
                overlays[file] = overlay;
            }
        }

        QemuArguments clone = user.With(CloneArguments(user, dir, macs, overlays));
        await DaemonizeAsync(clone, cancellationToken).ConfigureAwait(false);
        int pid = int.Parse(File.ReadAllText(Path.Combine(dir, "qemu.pid")).Trim(), NumberStyles.None, CultureInfo.InvariantCulture);
        string socket = Path.Combine(dir, "qmp.sock");
        await using (QmpClient qmp = await QmpClient.ConnectAsync(socket, TimeSpan.FromSeconds(30), cancellationToken).ConfigureAwait(false))
        {
            await qmp.ExecuteAsync("migrate-incoming", new JsonObject { ["uri"] = $"exec:cat '{stream.Replace("'", "'\\''", StringComparison.Ordinal)}'" }, null, cancellationToken).ConfigureAwait(false);
            var clock = Stopwatch.StartNew();
            string status;
            while ((status = await qmp.QueryStatusAsync(cancellationToken).ConfigureAwait(false)) is "inmigrate")
            {
                if (clock.Elapsed > TimeSpan.FromMinutes(5))
                {
                    throw new TimeoutException($"clone {name} did not load the snapshot within 5 minutes");
                }

                await Task.Delay(20, cancellationToken).ConfigureAwait(false);
            }

            if (status != "running")
            {
                await qmp.ContAsync(cancellationToken).ConfigureAwait(false);
            }
        }

        File.Delete(stream);
        var result = new ForkClone
        {
            Name = name,
            Directory = dir,
            ProcessId = pid,
            QmpSocket = socket,
            Snapshot = Path.GetFullPath(snapshot),
            Macs = macs,
            Started = DateTimeOffset.UtcNow,
            Command = clone.ToArgv(),
        };
        string temporary = Path.Combine(dir, ForkClone.FileName + ".tmp");
        await File.WriteAllBytesAsync(temporary, result.ToJson(), cancellationToken).ConfigureAwait(false);
        File.Move(temporary, Path.Combine(dir, ForkClone.FileName), overwrite: true);
        return result;
    }

    private static async Task DaemonizeAsync(QemuArguments clone, CancellationToken cancellationToken)
    {
        var psi = new ProcessStartInfo(clone.Program) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (string word in clone.ToArgv().Skip(1))
        {
            psi.ArgumentList.Add(word);
        }

        using Process p = Process.Start(psi) ?? throw new IOException($"{clone.Program} did not start");
        p.StandardInput.Close();
        Task<string> stderr = p.StandardError.ReadToEndAsync(cancellationToken);
        Task<string> stdout = p.StandardOutput.ReadToEndAsync(cancellationToken);
        await p.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        if (p.ExitCode != 0)
        {
            throw new IOException($"{clone.Program} exited with code {p.ExitCode}: {(await stderr.ConfigureAwait(false)).Trim()} {(await stdout.ConfigureAwait(false)).Trim()}");
        }
    }

    private static async Task StopCloneAsync(ForkClone clone, CancellationToken cancellationToken)
    {
        if (clone.IsRunning)
        {
            try
            {
                await using QmpClient qmp = await QmpClient.ConnectAsync(clone.QmpSocket, TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
                await qmp.QuitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or TimeoutException or LiveVmGoneException or QmpException)
            {
            }

            var clock = Stopwatch.StartNew();
            while (clone.IsRunning && clock.Elapsed < TimeSpan.FromSeconds(10))
            {
                await Task.Delay(50, cancellationToken).ConfigureAwait(false);
            }

            if (clone.IsRunning)
            {
                try
                {
                    using Process p = Process.GetProcessById(clone.ProcessId);
                    p.Kill();
                }
                catch (ArgumentException)
                {
                    // It exited meanwhile.
                }
            }
        }

        System.IO.Directory.Delete(clone.Directory, recursive: true);
    }

    private static string NewMac(HashSet<string> used)
    {
        Span<byte> b = stackalloc byte[3];
        while (true)
        {
            // QEMU's own prefix 52:54:00 with three random bytes, as QEMU assigns its defaults.
            RandomNumberGenerator.Fill(b);
            string mac = string.Create(CultureInfo.InvariantCulture, $"52:54:00:{b[0]:x2}:{b[1]:x2}:{b[2]:x2}");
            if (used.Add(mac))
            {
                return mac;
            }
        }
    }
}
