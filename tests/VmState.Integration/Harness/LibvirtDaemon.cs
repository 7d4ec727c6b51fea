using System.Diagnostics;
using System.Globalization;

namespace VmState.Integration.Harness;

/// <summary>
/// A real libvirtd (Debian 12's monolithic daemon) of the test's own, with the fixture guest running in it as a
/// transient TCG domain. The daemon runs in a private mount namespace (<c>unshare --mount</c>) whose /etc/libvirt,
/// /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt are directories of the test: its own
/// libvirtd.conf (a private socket, no auth), its own qemu.conf (QEMU as root, console output to files, so no
/// virtlogd; save images gzip-compressed), and nothing of a libvirt the host may run is read or changed. No systemd, no D-Bus.
/// </summary>
public sealed class LibvirtDaemon : IAsyncLifetime
{
    private static readonly string[] s_systemDirs = ["/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt"];
    private Process? _daemon;

    /// <summary>The private directory (daemon state, guest files, serial log).</summary>
    public string Dir { get; } = Path.Combine("/tmp", $"vms-lv-{Guid.NewGuid():N}"[..16]);

    /// <summary>The URI of the private daemon.</summary>
    public string Uri => $"qemu:///system?socket={Path.Combine(Dir, "sock", "libvirt-sock")}";

    /// <summary>The TCP port the daemon also listens on (loopback only, no auth), for remote-transport URIs.</summary>
    public int TcpPort { get; } = FreeTcpPort();

    /// <summary>
    /// The same daemon through libvirt's remote TCP transport (<c>qemu+tcp://127.0.0.1:PORT/system</c>), over which, as
    /// to any remote host, no file descriptor can be passed.
    /// </summary>
    public string TcpUri => $"qemu+tcp://127.0.0.1:{TcpPort.ToString(CultureInfo.InvariantCulture)}/system";

    /// <summary>The fixture guest's domain name.</summary>
    public string Domain { get; } = $"vmstate-test-{Guid.NewGuid():N}"[..24];

    /// <summary>The guest's serial console log.</summary>
    public string SerialLog => Path.Combine(Dir, "guest", "serial.log");

    /// <summary>The ground truth the guest printed when it booted (kept: a restored domain writes its log anew).</summary>
    public GroundTruth Truth { get; private set; } = new();

    /// <inheritdoc />
    public async Task InitializeAsync()
    {
        GuestFixture f = GuestFixture.Ensure();
        foreach (string d in new[] { "run", "etc", "lib", "cache", "log", "sock", "guest" })
        {
            Directory.CreateDirectory(Path.Combine(Dir, d));
        }

        // QEMU (root, from the daemon) reads the kernel from here; /root/.cache is not for others to traverse.
        File.SetUnixFileMode(Dir, (UnixFileMode)0x1ED);
        File.SetUnixFileMode(Path.Combine(Dir, "guest"), (UnixFileMode)0x1ED);
        string kernel = Path.Combine(Dir, "guest", "vmlinuz");
        string initrd = Path.Combine(Dir, "guest", "initramfs.cpio.gz");
        File.Copy(f.Kernel, kernel);
        File.Copy(f.Initrd, initrd);
        await File.WriteAllTextAsync(Path.Combine(Dir, "etc", "libvirtd.conf"), $"""
            unix_sock_dir = "{Path.Combine(Dir, "sock")}"
            auth_unix_rw = "none"
            auth_unix_ro = "none"
            listen_tls = 0
            listen_tcp = 1
            listen_addr = "127.0.0.1"
            tcp_port = "{TcpPort}"
            auth_tcp = "none"
            log_outputs = "3:file:{Path.Combine(Dir, "libvirtd.log")}"

            """);
        await File.WriteAllTextAsync(Path.Combine(Dir, "etc", "qemu.conf"), """
            user = "root"
            group = "root"
            dynamic_ownership = 0
            stdio_handler = "file"
            security_driver = "none"
            save_image_format = "gzip"

            """);
        // /run is a tmpfs: on a machine booted without systemd (a container, a fresh CI runner) nothing recreated
        // the package's /run/libvirt, which is only a mount point here (an empty directory, as tmpfiles.d makes it).
        if (Directory.Exists("/etc/libvirt") && !Directory.Exists("/run/libvirt"))
        {
            Directory.CreateDirectory("/run/libvirt", (UnixFileMode)0x1ED);
        }

        foreach (string d in s_systemDirs)
        {
            Assert.True(Directory.Exists(d), $"{d} is missing: is Debian's libvirt-daemon-system installed (eng/install-deps.sh)?");
        }

        string mounts = string.Join(" && ", new[] { ("etc", "/etc/libvirt"), ("run", "/run/libvirt"), ("lib", "/var/lib/libvirt"), ("cache", "/var/cache/libvirt"), ("log", "/var/log/libvirt") }
            .Select(m => $"mount --bind '{Path.Combine(Dir, m.Item1)}' '{m.Item2}'"));
        var psi = new ProcessStartInfo("unshare") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Dir };
        foreach (string a in new[] { "--mount", "--propagation", "private", "--", "sh", "-c", $"{mounts} && exec libvirtd --listen --config '{Path.Combine(Dir, "etc", "libvirtd.conf")}' --pid-file '{Path.Combine(Dir, "libvirtd.pid")}'" })
        {
            psi.ArgumentList.Add(a);
        }

        _daemon = Process.Start(psi) ?? throw new InvalidOperationException("cannot start unshare/libvirtd");
        Task<string> daemonErr = _daemon.StandardError.ReadToEndAsync();
        _ = _daemon.StandardOutput.ReadToEndAsync();
        var clock = Stopwatch.StartNew();
        // The first answer waits for the daemon to probe QEMU's capabilities (seconds; more on a loaded machine).
        while (!Answers())
        {
            if (_daemon.HasExited)
            {
                Assert.Fail($"libvirtd exited ({_daemon.ExitCode}): {await daemonErr}{Log()}");
            }

            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(180), $"libvirtd did not answer on {Uri} within 180 s{Log()}");
            await Task.Delay(200);
        }

        string xml = Path.Combine(Dir, "domain.xml");
        await File.WriteAllTextAsync(xml, DomainXml(kernel, initrd));
        HostCommand.Result created = Virsh(TimeSpan.FromSeconds(120), "create", xml);
        Assert.True(created.ExitCode == 0, $"virsh create: {created}{Log()}");
        await WaitForSerialLineAsync(l => l.StartsWith("VMSTATE-READY", StringComparison.Ordinal), TimeSpan.FromSeconds(240));
        Truth = GroundTruth.Parse(await File.ReadAllTextAsync(SerialLog));
    }

    /// <summary>The highest marker tick the guest printed so far (0 when none).</summary>
    public int LastTick() => !File.Exists(SerialLog) ? 0 : File.ReadAllLines(SerialLog)
        .Where(l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal))
        .Select(l => int.TryParse(l["VMSMARKER tick=".Length..].Split(' ')[0], NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? n : 0)
        .DefaultIfEmpty(0).Max();

    /// <summary>Waits until the guest prints a marker tick above <paramref name="tick"/>: it runs.</summary>
    public Task WaitForTickAfterAsync(int tick, TimeSpan timeout) => WaitForSerialLineAsync(
        l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal) && int.TryParse(l["VMSMARKER tick=".Length..].Split(' ')[0], NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n > tick,
        timeout);

    private bool Answers()
    {
        try
        {
            return Virsh(TimeSpan.FromSeconds(60), "version").ExitCode == 0;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    private static int FreeTcpPort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Runs virsh against the private daemon.</summary>
    public HostCommand.Result Virsh(TimeSpan timeout, params string[] args) =>
        HostCommand.Run("virsh", ["-c", Uri, .. args], Dir, timeout);

    /// <summary>The domain's state as virsh says it ("running", "paused", "shut off", ...).</summary>
    public string State()
    {
        HostCommand.Result r = Virsh(TimeSpan.FromSeconds(30), "domstate", Domain);
        return r.ExitCode == 0 ? r.Stdout.Trim() : $"(virsh domstate failed: {r.Stderr.Trim()})";
    }

    /// <summary>Waits for a serial line matching <paramref name="predicate"/>, from line <paramref name="startAtLine"/> on.</summary>
    public async Task<string> WaitForSerialLineAsync(Func<string, bool> predicate, TimeSpan timeout, int startAtLine = 0)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (File.Exists(SerialLog))
            {
                string[] lines = (await File.ReadAllTextAsync(SerialLog)).Split('\n');
                string? hit = lines.Skip(startAtLine).FirstOrDefault(l => predicate(l.TrimEnd('\r')));
                if (hit is not null)
                {
                    return hit.TrimEnd('\r');
                }
            }

            await Task.Delay(200);
        }

        string[] all = File.Exists(SerialLog) ? File.ReadAllLines(SerialLog) : [];
        string tail = all.Length > 0 ? string.Join('\n', all.TakeLast(20)) : "(no serial log)";
        // The snapshot requests the guest made are often what a test waits for: all of them, not only the tail's.
        string triggers = string.Join('\n', all.Where(l => l.StartsWith("VMSTATE-TRIGGER", StringComparison.Ordinal) || l.StartsWith("vmstate-trigger", StringComparison.Ordinal)));
        throw new TimeoutException($"no matching serial line from domain {Domain} within {timeout.TotalSeconds:F0} s; domain state: {State()}; console tail:\n{tail}\nevery trigger line:\n{triggers}{Log()}");
    }

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        if (_daemon is not null)
        {
            if (!_daemon.HasExited)
            {
                _ = Virsh(TimeSpan.FromSeconds(30), "destroy", Domain);
                _ = Kill(_daemon.Id, 15);
                if (!_daemon.WaitForExit(15_000))
                {
                    _daemon.Kill(true);
                }
            }

            _daemon.Dispose();
        }

        // QEMU, started by the daemon, outlives it: destroyed above; anything left with our UUID-free name is killed.
        foreach (int pid in QemuProcessesNamed(Domain))
        {
            _ = Kill(pid, 9);
        }

        await Task.Yield();
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private string DomainXml(string kernel, string initrd) => $"""
        <domain type='qemu'>
          <name>{Domain}</name>
          <memory unit='MiB'>256</memory>
          <vcpu>2</vcpu>
          <os>
            <type arch='x86_64' machine='pc'>hvm</type>
            <kernel>{kernel}</kernel>
            <initrd>{initrd}</initrd>
            <cmdline>console=ttyS0 quiet loglevel=3 panic=-1 no_timer_check vmstate.trigger=4</cmdline>
          </os>
          <features><acpi/></features>
          <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model></cpu>
          <on_reboot>destroy</on_reboot>
          <devices>
            <emulator>/usr/bin/qemu-system-x86_64</emulator>
            <serial type='file'><source path='{SerialLog}' append='on'/></serial>
            <interface type='user'><mac address='52:54:00:5a:11:01'/><model type='virtio'/></interface>
            <video><model type='none'/></video>
            <memballoon model='none'/>
          </devices>
        </domain>
        """;

    private string Log()
    {
        string path = Path.Combine(Dir, "libvirtd.log");
        return File.Exists(path) ? $"\nlibvirtd log:\n{string.Join('\n', File.ReadAllLines(path).TakeLast(15))}" : string.Empty;
    }

    private static IEnumerable<int> QemuProcessesNamed(string domain)
    {
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out int pid))
            {
                continue;
            }

            string cmdline;
            try
            {
                cmdline = File.ReadAllText(Path.Combine(dir, "cmdline"));
            }
            catch (IOException)
            {
                continue;
            }

            if (cmdline.StartsWith("/usr/bin/qemu-system", StringComparison.Ordinal) && cmdline.Contains($"guest={domain},", StringComparison.Ordinal))
            {
                yield return pid;
            }
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);
}
