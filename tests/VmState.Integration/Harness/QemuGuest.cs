using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using VmState.Live;

namespace VmState.Integration.Harness;

/// <summary>
/// A real qemu-system-x86_64 (or, with <see cref="QemuGuestOptions.Arm64"/>, qemu-system-aarch64 -M virt), TCG, running the fixture guest, with a QMP socket and the serial console in a file.
/// The QEMU process is always killed: on dispose, when starting fails, and when the test process exits.
/// </summary>
public sealed class QemuGuest : IAsyncDisposable
{
    private static readonly ConcurrentDictionary<int, Process> s_running = new();

    /// <summary>
    /// Warm starts: per QEMU command line (<see cref="WarmKey"/>), the state of the first guest of that kind at its
    /// READY line, kept as a migration stream with the console text up to that moment. A later guest of the same kind
    /// resumes from it (-incoming) instead of booting, which takes a second or two where a TCG boot takes 15–40 s of
    /// CPU. The restored guest is the same real guest, as a user's restored snapshot is: its console starts with the
    /// text the first one printed (ground truth included) and goes on. A null value: being made, or it failed.
    /// Set VMSTATE_TEST_COLD_BOOT=1 to boot every guest.
    /// </summary>
    private static readonly ConcurrentDictionary<string, WarmImage?> s_warm = new();
    private static readonly Lazy<string> s_warmDir = new(() =>
    {
        string dir = Directory.CreateTempSubdirectory("vmstate-warm-").FullName;
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try
            {
                Directory.Delete(dir, recursive: true);
            }
            catch (IOException)
            {
            }
        };
        return dir;
    });

    private readonly Process _process;
    private readonly StringBuilder _stderr = new();
    private readonly string? _warmKey;

    static QemuGuest()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) => KillAll();
        Console.CancelKeyPress += (_, _) => KillAll();
    }

    private QemuGuest(Process process, string workDir, QemuGuestOptions options, string? warmKey, bool restored)
    {
        _process = process;
        WorkDir = workDir;
        Options = options;
        _warmKey = warmKey;
        Restored = restored;
    }

    /// <summary>Whether this guest was resumed from the first READY guest of its kind instead of booted (see <see cref="s_warm"/>).</summary>
    public bool Restored { get; }

    public string WorkDir { get; }

    public QemuGuestOptions Options { get; }

    public string SerialPath => Path.Combine(WorkDir, "serial.log");

    public string QmpPath => Path.Combine(WorkDir, "qmp.sock");

    /// <summary>A second QMP socket for tools under test (QEMU serves one client per QMP socket; the harness holds the first).</summary>
    public string ToolQmpPath => Path.Combine(WorkDir, "qmp-tool.sock");

    public QmpClient Qmp { get; private set; } = null!;

    /// <summary>The serial console so far.</summary>
    public string SerialText => File.Exists(SerialPath) ? ReadShared(SerialPath) : string.Empty;

    /// <summary>The ground truth the guest printed (valid after <see cref="WaitForReadyAsync"/>).</summary>
    public GroundTruth Truth => GroundTruth.Parse(SerialText);

    /// <summary>The QEMU command line for <paramref name="options"/> (identical for a source and its -incoming twin).</summary>
    public static List<string> CommandLine(QemuGuestOptions options, string workDir)
    {
        if (options.Arm64)
        {
            return Arm64CommandLine(options, workDir);
        }

        GuestFixture f = GuestFixture.Ensure(options.KernelSeries);
        var args = new List<string>
        {
            "-M", options.Machine, "-accel", "tcg", "-m", options.MemoryMiB.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "-smp", options.Cpus.ToString(System.Globalization.CultureInfo.InvariantCulture), "-cpu", options.CpuModel,
            "-display", "none", "-vga", "std", "-no-reboot",
            "-kernel", f.Kernel, "-initrd", f.Initrd,
            "-append", $"console=ttyS0 quiet loglevel=3 panic=-1 no_timer_check {options.ExtraKernelArgs}".Trim(),
            "-netdev", "user,id=n0,restrict=on", "-device", $"virtio-net-pci,netdev=n0,mac={options.VirtioMac}",
            "-netdev", "user,id=n1,restrict=on", "-device", $"e1000,netdev=n1,mac={options.E1000Mac}",
            "-device", "vmcoreinfo",
            "-serial", $"file:{Path.Combine(workDir, "serial.log")}",
            "-qmp", $"unix:{Path.Combine(workDir, "qmp.sock")},server=on,wait=off",
            "-qmp", $"unix:{Path.Combine(workDir, "qmp-tool.sock")},server=on,wait=off",
        };
        if (options.SharedMemoryPath is not null)
        {
            // id=pc.ram keeps the RAMBlock name snapshots expect (QEMU docs: memory-backend and migration).
            args.AddRange(["-object", $"memory-backend-file,id=pc.ram,size={options.MemoryMiB}M,mem-path={options.SharedMemoryPath},share=on", "-machine", "memory-backend=pc.ram"]);
        }

        if (options.GdbPort is int gdbPort)
        {
            args.AddRange(["-gdb", $"tcp:127.0.0.1:{gdbPort}"]);
        }

        if (options.DiskPath is not null)
        {
            args.AddRange(["-drive", $"file={options.DiskPath},if=ide,format=qcow2,node-name=disk0"]);
        }

        if (options.Incoming is not null)
        {
            args.AddRange(["-incoming", $"exec:cat '{options.Incoming}'"]);
        }

        if (options.LoadVm is not null)
        {
            args.AddRange(["-loadvm", options.LoadVm]);
        }

        args.AddRange(options.ExtraArgs);
        return args;
    }

    /// <summary>
    /// The qemu-system-aarch64 command line of the arm64 guest: -M virt (RAM at 1 GiB, a kaslr-seed in the device
    /// tree, so KASLR is on), TCG, the PL011 console (ttyAMA0), the same NICs and vmcoreinfo device as the x86 guest.
    /// </summary>
    private static List<string> Arm64CommandLine(QemuGuestOptions options, string workDir)
    {
        GuestFixture f = GuestFixture.EnsureArm64();
        var args = new List<string>
        {
            "-M", options.Machine == "pc" ? "virt" : options.Machine, "-accel", "tcg", "-m", options.MemoryMiB.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "-smp", options.Cpus.ToString(System.Globalization.CultureInfo.InvariantCulture), "-cpu", options.CpuModel == "qemu64" ? "max" : options.CpuModel,
            "-display", "none", "-no-reboot",
            "-kernel", f.Kernel, "-initrd", f.Initrd,
            "-append", $"console=ttyAMA0 quiet loglevel=3 panic=-1 {options.ExtraKernelArgs}".Trim(),
            "-netdev", "user,id=n0,restrict=on", "-device", $"virtio-net-pci,netdev=n0,mac={options.VirtioMac}",
            "-netdev", "user,id=n1,restrict=on", "-device", $"e1000,netdev=n1,mac={options.E1000Mac}",
            "-device", "vmcoreinfo",
            "-serial", $"file:{Path.Combine(workDir, "serial.log")}",
            "-qmp", $"unix:{Path.Combine(workDir, "qmp.sock")},server=on,wait=off",
            "-qmp", $"unix:{Path.Combine(workDir, "qmp-tool.sock")},server=on,wait=off",
        };
        if (options.DiskPath is not null)
        {
            // A drive without a guest device: the place savevm keeps the snapshot (the guest needs no disk).
            args.AddRange(["-drive", $"file={options.DiskPath},if=none,id=disk0,format=qcow2"]);
        }

        if (options.GdbPort is int gdbPort)
        {
            args.AddRange(["-gdb", $"tcp:127.0.0.1:{gdbPort}"]);
        }

        if (options.Incoming is not null)
        {
            args.AddRange(["-incoming", $"exec:cat '{options.Incoming}'"]);
        }

        if (options.LoadVm is not null)
        {
            args.AddRange(["-loadvm", options.LoadVm]);
        }

        args.AddRange(options.ExtraArgs);
        return args;
    }

    /// <summary>Starts QEMU and connects QMP (does not wait for the guest's READY line).</summary>
    public static async Task<QemuGuest> StartAsync(QemuGuestOptions options, CancellationToken cancellationToken = default)
    {
        string workDir = Directory.CreateTempSubdirectory("vmstate-guest-").FullName;
        string qemu = options.Arm64 ? "qemu-system-aarch64" : "qemu-system-x86_64";
        var psi = new ProcessStartInfo(qemu) { RedirectStandardError = true, RedirectStandardOutput = true, RedirectStandardInput = true };
        List<string> commandLine = CommandLine(options, workDir);
        string? warmKey = WarmKey(options);
        WarmImage? image = warmKey is not null && s_warm.TryGetValue(warmKey, out WarmImage? made) ? made : null;
        if (image is not null)
        {
            // The console goes on from the first guest's text: QEMU appends to the file it finds (-serial file:
            // would truncate it), and the VM starts once the stream is loaded (-incoming without -S).
            string serial = Path.Combine(workDir, "serial.log");
            File.WriteAllText(serial, image.Serial);
            int at = commandLine.IndexOf($"file:{serial}");
            commandLine[at - 1] = "-chardev";
            commandLine[at] = $"file,id=vmstate-serial,path={serial},append=on";
            commandLine.InsertRange(at + 1, ["-serial", "chardev:vmstate-serial", "-incoming", $"exec:cat '{image.Stream}'"]);
        }

        foreach (string a in commandLine)
        {
            psi.ArgumentList.Add(a);
        }

        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new InvalidOperationException($"{qemu} did not start");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"{qemu} is not installed (run eng/install-deps.sh)", e);
        }

        var guest = new QemuGuest(process, workDir, options, warmKey, image is not null);
        s_running[process.Id] = process;
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (guest._stderr)
                {
                    guest._stderr.AppendLine(e.Data);
                }
            }
        };
        process.BeginErrorReadLine();
        try
        {
            var clock = Stopwatch.StartNew();
            while (!File.Exists(guest.QmpPath))
            {
                if (process.HasExited)
                {
                    throw new InvalidOperationException($"QEMU exited with {process.ExitCode} before opening QMP:\n{guest.Stderr}");
                }

                if (clock.Elapsed > TimeSpan.FromSeconds(30))
                {
                    throw new TimeoutException($"QEMU did not create {guest.QmpPath} within 30 s:\n{guest.Stderr}");
                }

                await Task.Delay(20, cancellationToken);
            }

            // QEMU creates the socket file (bind) a moment before it listens: a connect in between is refused.
            while (true)
            {
                try
                {
                    guest.Qmp = await QmpClient.ConnectAsync(guest.QmpPath, TimeSpan.FromSeconds(30), cancellationToken);
                    return guest;
                }
                catch (IOException e) when (e.InnerException is System.Net.Sockets.SocketException { SocketErrorCode: System.Net.Sockets.SocketError.ConnectionRefused } && !process.HasExited && clock.Elapsed < TimeSpan.FromSeconds(30))
                {
                    await Task.Delay(20, cancellationToken);
                }
            }
        }
        catch
        {
            await guest.DisposeAsync();
            throw;
        }
    }

    /// <summary>QEMU's stderr so far.</summary>
    public string Stderr
    {
        get
        {
            lock (_stderr)
            {
                return _stderr.ToString();
            }
        }
    }

    /// <summary>
    /// Waits for VMSTATE-READY on the console (a restored guest: until it runs); on timeout throws with the console
    /// tail and QEMU's stderr. The first guest of its kind to get here is kept as the warm image of that kind.
    /// </summary>
    public async Task WaitForReadyAsync(TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        await WaitForSerialLineAsync(l => l.StartsWith("VMSTATE-READY", StringComparison.Ordinal), timeout);
        if (Restored)
        {
            // READY is in the text it started with; it is ready once QEMU has loaded the stream and runs the VM (a
            // stream of a paused VM loads paused: QEMU carries the run state over).
            QemuRunState state;
            while ((state = await Qmp.QueryRunStateAsync()) != QemuRunState.Running)
            {
                if (state == QemuRunState.Paused)
                {
                    await ResumeAsync();
                    continue;
                }

                if (_process.HasExited || clock.Elapsed > timeout)
                {
                    throw new TimeoutException($"the restored guest did not run within {timeout.TotalSeconds:F0} s (QEMU {(_process.HasExited ? $"exited ({_process.ExitCode})" : "still loading")}):\n{Stderr}");
                }

                await Task.Delay(50);
            }
        }
        else if (_warmKey is not null && s_warm.TryAdd(_warmKey, null))
        {
            // Migrated while it runs, so that the stream carries a running VM (the restored one starts by itself);
            // QEMU stops it for the last pass and it stays stopped when done, so the console then holds exactly what
            // the saved state had printed. Running again on every path.
            string stream = Path.Combine(s_warmDir.Value, $"{Guid.NewGuid():N}.mig");
            try
            {
                await MigrateToFileAsync(stream);
                s_warm[_warmKey] = new WarmImage(stream, SerialText);
            }
            finally
            {
                await ResumeAsync();
            }
        }
    }

    /// <summary>Waits for a console line (from line <paramref name="startAtLine"/> on) that satisfies <paramref name="predicate"/>.</summary>
    public async Task<string> WaitForSerialLineAsync(Func<string, bool> predicate, TimeSpan timeout, int startAtLine = 0)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            string[] lines = SerialText.Split('\n');
            for (int i = startAtLine; i < lines.Length; i++)
            {
                string line = lines[i].TrimEnd('\r');
                if ((i < lines.Length - 1 || SerialText.EndsWith('\n')) && predicate(line))
                {
                    return line;
                }
            }

            if (_process.HasExited || clock.Elapsed > timeout)
            {
                string tail = string.Join('\n', lines.TakeLast(40));
                throw new TimeoutException($"{(_process.HasExited ? $"QEMU exited ({_process.ExitCode})" : $"timeout after {timeout.TotalSeconds:F0} s")} waiting for a serial line. Console tail:\n{tail}\nQEMU stderr:\n{Stderr}");
            }

            await Task.Delay(50);
        }
    }

    /// <summary>Number of console lines so far (to wait for lines printed after a point).</summary>
    public int SerialLineCount => SerialText.Split('\n').Length - 1;

    public Task PauseAsync() => Qmp.StopAsync();

    public Task ResumeAsync() => Qmp.ContAsync();

    public Task MigrateToFileAsync(string path) => Qmp.MigrateToFileAsync(path);

    public Task SaveVmAsync(string tag) => Qmp.SaveVmAsync(tag);

    public Task DumpGuestMemoryAsync(string path) => Qmp.DumpGuestMemoryAsync(path);

    /// <summary>Every vCPU's registers from HMP "info registers -a".</summary>
    public async Task<IReadOnlyList<VcpuRegisters>> InfoRegistersAsync() => VcpuRegisters.ParseAll(await Qmp.HumanMonitorCommandAsync("info registers -a"));

    /// <summary>Asks QEMU to quit and waits for it to exit.</summary>
    public async Task QuitAsync()
    {
        await Qmp.QuitAsync();
        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (Qmp is not null)
        {
            await Qmp.DisposeAsync();
        }

        Kill(_process);
        s_running.TryRemove(_process.Id, out _);
        _process.Dispose();
        if (Environment.GetEnvironmentVariable("VMSTATE_KEEP_WORK") != "1")
        {
            try
            {
                Directory.Delete(WorkDir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static void KillAll()
    {
        foreach (Process p in s_running.Values)
        {
            Kill(p);
        }
    }

    private static void Kill(Process p)
    {
        try
        {
            if (!p.HasExited)
            {
                p.Kill(entireProcessTree: true);
                p.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException)
        {
        }
    }

    /// <summary>
    /// The kind of guest a warm image may stand for: its whole command line but for the per-guest paths and the
    /// gdbstub port (neither is part of the VM's state); null for a guest that starts from something of its own (a
    /// stream, a disk, RAM in a file, extra devices or backends) or when VMSTATE_TEST_COLD_BOOT=1.
    /// </summary>
    private static string? WarmKey(QemuGuestOptions options)
    {
        if (options.Incoming is not null || options.LoadVm is not null || options.DiskPath is not null || options.SharedMemoryPath is not null
            || options.ExtraArgs.Count > 0 || Environment.GetEnvironmentVariable("VMSTATE_TEST_COLD_BOOT") == "1")
        {
            return null;
        }

        return string.Join('\n', CommandLine(options with { GdbPort = null }, "/WORKDIR"));
    }

    private sealed record WarmImage(string Stream, string Serial);

    private static string ReadShared(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var r = new StreamReader(fs);
        return r.ReadToEnd();
    }
}
