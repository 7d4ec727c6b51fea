using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using VmState.Arch;
using VmState.Arch.Arm64;
using VmState.Integration.Harness;
using VmState.Linux;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;

namespace VmState.Integration;

/// <summary>
/// Boots the arm64 fixture guest (Debian's arm64 6.1 kernel under qemu-system-aarch64 -M virt -cpu max, TCG, KASLR on)
/// once, pauses it, and records the paused state: QEMU's registers (HMP info registers -a), QEMU's own
/// dump-guest-memory and a migration stream.
/// </summary>
public class Arm64GuestFixture : IAsyncLifetime
{
    /// <summary>The -cpu model the guest runs on.</summary>
    protected virtual string CpuModel => "max";

    public string Dir { get; } = Directory.CreateTempSubdirectory("vmstate-arm64-").FullName;

    public GroundTruth Truth { get; private set; } = null!;

    /// <summary>
    /// Per vCPU, the registers HMP printed ("PC", "X00".."X30", "SP", "PSTATE", "FPCR", "FPSR", and the V registers as
    /// "V00.lo"/"V00.hi" .. "V31.hi").
    /// </summary>
    public IReadOnlyList<IReadOnlyDictionary<string, ulong>> Registers { get; private set; } = [];

    public string StreamPath => Path.Combine(Dir, "guest.mig");

    public string DumpPath => Path.Combine(Dir, "qemu-dump.elf");

    /// <summary>A qcow2 image (attached as a drive without a guest device) holding the same paused state as a savevm snapshot.</summary>
    public string DiskPath => Path.Combine(Dir, "disk.qcow2");

    /// <summary>The savevm tag of the snapshot in <see cref="DiskPath"/>.</summary>
    public const string SavevmTag = "arm64-test";

    /// <summary>Seconds from QEMU's start to VMSTATE-READY (TCG boot of the arm64 guest).</summary>
    public double BootSeconds { get; private set; }

    /// <summary>The guest, resumed after the snapshot, for the live-attach tests (null when <see cref="KeepRunning"/> is false).</summary>
    public QemuGuest? Running { get; private set; }

    /// <summary>Whether the guest runs on after the snapshot (the live tests of <see cref="Arm64Tests"/> attach to it).</summary>
    protected virtual bool KeepRunning => true;

    public async Task InitializeAsync()
    {
        var clock = Stopwatch.StartNew();
        using (Process img = Process.Start("qemu-img", ["create", "-q", "-f", "qcow2", DiskPath, "64M"]))
        {
            await img.WaitForExitAsync();
        }

        QemuGuest guest = await QemuGuest.StartAsync(new QemuGuestOptions { Arm64 = true, MemoryMiB = 256, CpuModel = CpuModel, DiskPath = DiskPath }, CancellationToken.None);
        try
        {
            await guest.WaitForReadyAsync(TimeSpan.FromSeconds(240));
            BootSeconds = clock.Elapsed.TotalSeconds;
            Truth = guest.Truth;
            await guest.PauseAsync();
            Registers = ParseRegisters(await guest.Qmp.HumanMonitorCommandAsync("info registers -a"));
            await guest.DumpGuestMemoryAsync(DumpPath);
            await guest.SaveVmAsync(SavevmTag);
            await guest.MigrateToFileAsync(StreamPath);
            if (KeepRunning)
            {
                await guest.ResumeAsync();
                Running = guest;
                return;
            }

            await guest.QuitAsync();
        }
        catch
        {
            await guest.DisposeAsync();
            throw;
        }

        await guest.DisposeAsync();
    }

    public async Task DisposeAsync()
    {
        if (Running is QemuGuest g)
        {
            await g.QuitAsync();
            await g.DisposeAsync();
        }

        if (Environment.GetEnvironmentVariable("VMSTATE_KEEP_WORK") != "1")
        {
            Directory.Delete(Dir, recursive: true);
        }
    }

    // QEMU 7.2 target/arm/cpu.c aarch64_cpu_dump_state: "CPU#n", " PC=%016x X00=%016x X01=...", "SP=%016x",
    // "PSTATE=%08x ...".
    internal static List<IReadOnlyDictionary<string, ulong>> ParseRegisters(string text)
    {
        var all = new List<IReadOnlyDictionary<string, ulong>>();
        Dictionary<string, ulong>? current = null;
        string? zChunk = null;
        foreach (string line in text.Split('\n'))
        {
            if (line.StartsWith("CPU#", StringComparison.Ordinal))
            {
                current = new Dictionary<string, ulong>(StringComparer.Ordinal);
                all.Add(current);
                continue;
            }

            if (current is null)
            {
                continue;
            }

            foreach (Match m in Regex.Matches(line, @"\b(PC|X\d\d|SP|PSTATE|FPCR|FPSR)=([0-9a-f]+)\b"))
            {
                current.TryAdd(m.Groups[1].Value, ulong.Parse(m.Groups[2].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture));
            }

            // "Q00=d[1]:d[0]", or with SVE "Z00=…:d[1]:d[0]" (highest doubleword first), or above 256 bits in chunks
            // "Z00[3-2]=d7:d6:d5:d4" and "   [1-0]=d3:d2:d1:d0": V<n> is the last two doublewords ending at quadword 0,
            // kept as "V00.lo" (d[0]) and "V00.hi" (d[1]).
            var vectors = new List<(string N, string Words)>();
            foreach (Match m in Regex.Matches(line, @"\b[QZ](\d\d)=((?:[0-9a-f]{16}:)+[0-9a-f]{16})\b"))
            {
                vectors.Add((m.Groups[1].Value, m.Groups[2].Value));
            }

            Match chunk = Regex.Match(line, @"^\s*(?:Z(\d\d))?\[[0-9a-f]+-([0-9a-f]+)\]=((?:[0-9a-f]{16}:)+[0-9a-f]{16})");
            if (chunk.Success)
            {
                zChunk = chunk.Groups[1].Success ? chunk.Groups[1].Value : zChunk;
                if (chunk.Groups[2].Value == "0" && zChunk is not null)
                {
                    vectors.Add((zChunk, chunk.Groups[3].Value));
                }
            }

            foreach ((string n, string value) in vectors)
            {
                string[] words = value.Split(':');
                current.TryAdd($"V{n}.lo", ulong.Parse(words[^1], NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                current.TryAdd($"V{n}.hi", ulong.Parse(words[^2], NumberStyles.HexNumber, CultureInfo.InvariantCulture));
            }
        }

        return all;
    }
}

/// <summary>
/// AArch64 guests end to end on a real arm64 guest: the migration stream's cpu sections, the virt RAM layout, the
/// AArch64 ELF core against QEMU's own dump and gdb-multiarch, and the stage 1 walk against the guest's own
/// /proc/iomem and /proc/kallsyms.
/// </summary>
public sealed partial class Arm64Tests(Arm64GuestFixture guest) : IClassFixture<Arm64GuestFixture>
{
    [Fact]
    public void Stream_vcpus_have_the_registers_qemu_reports()
    {
        using MachineState m = SnapshotLoader.Open(guest.StreamPath);
        Assert.Equal(CpuArchitecture.Arm64, m.Architecture);
        Assert.Equal("virt-7.2", m.MachineType);
        Assert.Empty(m.Cpus);
        Assert.Equal(2, m.Arm64Cpus.Count);
        Assert.Equal(guest.Registers.Count, m.Arm64Cpus.Count);
        for (int i = 0; i < m.Arm64Cpus.Count; i++)
        {
            Arm64CpuState c = m.Arm64Cpus[i];
            RegistersAreWhatQemuReported(c, guest.Registers[i]);

            // Linux runs with the MMU on, 4 KiB granule, 48-bit VA (T1SZ = 16), kernel tables in TTBR1.
            Assert.True(c.MmuEnabled, $"cpu {i}: SCTLR_EL1 {c.SctlrEl1:x} has M clear");
            Assert.Equal(16UL, (c.TcrEl1 >> 16) & 0x3F);
            Assert.NotEqual(0UL, c.Ttbr1El1);
            Assert.True(c.HasFpSimd);
            Assert.Equal(c.X[0], ((IVcpuState)c).GetRegister("x0"));
        }

        // RAM at 1 GiB: the guest's own System RAM line.
        MemoryRangeIs(m, Truth("iomem").First(t => t.EndsWith("name=System RAM", StringComparison.Ordinal)));
    }

    [Fact]
    public void Info_shows_the_aarch64_vcpus()
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(["info", guest.StreamPath, "--json"]);
        Assert.True(code == 0, stderr);
        using JsonDocument doc = JsonDocument.Parse(stdout);
        JsonElement cpu0 = doc.RootElement.GetProperty("cpus")[0];
        Assert.Equal("aarch64", cpu0.GetProperty("architecture").GetString());
        Assert.Equal($"0x{guest.Registers[0]["PC"]:x}", cpu0.GetProperty("pc").GetString());
        Assert.StartsWith("0x", cpu0.GetProperty("systemRegisters").GetProperty("TTBR1_EL1").GetString(), StringComparison.Ordinal);
        Assert.True(cpu0.GetProperty("systemRegisters").TryGetProperty("TCR_EL1", out _));
    }

    [Fact]
    public void Extract_core_ram_and_notes_equal_qemu_dump_and_gdb_multiarch_reads_it()
    {
        string outDir = Path.Combine(guest.Dir, "extract");
        (int code, _, string stderr) = VmStateCli.Run(["extract", guest.StreamPath, "-o", outDir]);
        Assert.True(code == 0, $"extract failed ({code}): {stderr}");
        string core = Path.Combine(outDir, "core.elf");

        using MachineState ours = SnapshotLoader.Open(core);
        using MachineState qemu = SnapshotLoader.Open(guest.DumpPath);
        Assert.Equal(CpuArchitecture.Arm64, qemu.Architecture);
        RamAssert.Equal(qemu.Memory, ours.Memory);

        // The per-vCPU notes (NT_PRSTATUS, NT_FPREGSET) are byte for byte QEMU's; QEMU adds NT_ARM_SVE, which we do not.
        var ourNotes = ((Formats.Elf.ElfCoreOrigin)ours.Origin).Notes.Where(n => n.Name == "CORE").ToList();
        var qemuNotes = ((Formats.Elf.ElfCoreOrigin)qemu.Origin).Notes.Where(n => n.Name == "CORE").ToList();
        Assert.Equal(qemuNotes.Select(n => n.Type), ourNotes.Select(n => n.Type));
        for (int i = 0; i < ourNotes.Count; i++)
        {
            Assert.Equal(qemuNotes[i].Descriptor, ourNotes[i].Descriptor);
        }

        byte[] note = ((Formats.Elf.ElfCoreOrigin)ours.Origin).VmcoreinfoNote ?? throw new InvalidOperationException("the core has no VMCOREINFO note");
        CoreHasWhatCrashNeeds(ours, Vmcoreinfo.FromNote(note));

        // hardware.json carries the AArch64 registers and the named system registers.
        using (JsonDocument hw = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(outDir, "hardware.json"))))
        {
            JsonElement cpu1 = hw.RootElement.GetProperty("cpus")[1];
            Assert.Equal("aarch64", cpu1.GetProperty("architecture").GetString());
            Assert.Equal($"0x{guest.Registers[1]["PC"]:x}", cpu1.GetProperty("registers").GetProperty("pc").GetString());
            Assert.Equal($"0x{guest.Registers[1]["X30"]:x}", cpu1.GetProperty("registers").GetProperty("x30").GetString());
            Assert.True(cpu1.GetProperty("systemRegisters").TryGetProperty("TTBR1_EL1", out _));
        }

        (int gdbCode, string output) = GdbBatch.RunWith("gdb-multiarch", core, "info registers pc sp x0 x30 cpsr", "thread 2", "info registers pc sp");
        Assert.True(gdbCode == 0, output);
        Assert.Contains($"0x{guest.Registers[0]["PC"]:x}", output, StringComparison.Ordinal);
        Assert.Contains($"0x{guest.Registers[0]["X30"]:x}", output, StringComparison.Ordinal);
        Assert.Contains($"0x{guest.Registers[1]["SP"]:x}", output, StringComparison.Ordinal);

        // The FP/SIMD registers of every vCPU (NT_FPREGSET) are what QEMU's HMP printed: v0, v31, fpsr, fpcr.
        for (int cpu = 0; cpu < guest.Registers.Count; cpu++)
        {
            IReadOnlyDictionary<string, ulong> q = guest.Registers[cpu];
            (int fpCode, string fp) = GdbBatch.RunWith("gdb-multiarch", core, $"thread {cpu + 1}", "p/x $v0.d.u", "p/x $v31.d.u", "p/x $fpsr", "p/x $fpcr");
            Assert.True(fpCode == 0, fp);
            Assert.Contains($"= {{0x{q["V00.lo"]:x}, 0x{q["V00.hi"]:x}}}", fp, StringComparison.Ordinal);
            Assert.Contains($"= {{0x{q["V31.lo"]:x}, 0x{q["V31.hi"]:x}}}", fp, StringComparison.Ordinal);
            Assert.Matches($@"\$3 = 0x{q["FPSR"]:x}\b", fp);
            Assert.Matches($@"\$4 = 0x{q["FPCR"]:x}\b", fp);
        }
    }

    [Fact]
    public void Qcow2_savevm_snapshot_holds_what_qemu_reported()
    {
        // The same paused state, saved by HMP savevm into the qcow2 image: registers as HMP printed them, RAM as
        // QEMU's dump-guest-memory wrote it, and the Linux views on top.
        using MachineState m = SnapshotLoader.Open(guest.DiskPath, new SnapshotOpenOptions { Snapshot = Arm64GuestFixture.SavevmTag });
        Assert.Equal(CpuArchitecture.Arm64, m.Architecture);
        Assert.Equal(guest.Registers.Count, m.Arm64Cpus.Count);
        for (int i = 0; i < m.Arm64Cpus.Count; i++)
        {
            RegistersAreWhatQemuReported(m.Arm64Cpus[i], guest.Registers[i]);
        }

        using (MachineState dump = SnapshotLoader.Open(guest.DumpPath))
        {
            RamAssert.Equal(dump.Memory, m.Memory);
        }

        (int code, string stdout, string stderr) = VmStateCli.Run(["ps", guest.DiskPath, "--snapshot", Arm64GuestFixture.SavevmTag, "--json"]);
        Assert.True(code == 0, stderr);
        using JsonDocument doc = JsonDocument.Parse(stdout);
        var pids = doc.RootElement.GetProperty("processes").EnumerateArray().Select(p => p.GetProperty("pid").GetInt32()).ToHashSet();
        Assert.Contains(guest.Truth.Marker!.Pid, pids);
        foreach (GroundTruth.Process p in guest.Truth.Processes.Where(p => p.Comm.StartsWith("vmsd-", StringComparison.Ordinal)))
        {
            Assert.Contains(p.Pid, pids);
        }
    }

    [Fact]
    public void Translate_kernel_text_and_linear_map_through_ttbr1()
    {
        // _stext is where /proc/iomem's "Kernel code" starts (KASLR moves the virtual address, not the physical one).
        string stext = Truth("ksym").First(t => t.StartsWith("name=_stext ", StringComparison.Ordinal));
        ulong va = Field(stext, "addr");
        ulong kernelCode = Field(Truth("iomem").First(t => t.EndsWith("name=Kernel code", StringComparison.Ordinal)), "start");
        using MachineState m = SnapshotLoader.Open(guest.StreamPath);
        Arm64AddressSpace space = CpuAddressSpaces.OfArm64(m, 0);
        Arm64Translation t = space.Translate(va);
        Assert.True(t.Success, t.Failure);
        Assert.Equal(kernelCode, t.PhysicalAddress);
        Assert.Equal("TTBR1_EL1", t.TableBase);
        Assert.Equal(4, t.Entries.Count);

        // The linear map: PAGE_OFFSET (0xffff000000000000 with 48-bit VA) + x maps PHYS_OFFSET (0x40000000) + x.
        Assert.True(space.TryTranslate(0xffff_0000_0012_3458UL, out ulong pa));
        Assert.Equal(0x4012_3458UL, pa);

        (int code, string stdout, string stderr) = VmStateCli.Run(["translate", guest.StreamPath, $"0x{va:x}", "--explain"]);
        Assert.True(code == 0, stderr);
        Assert.Contains("TTBR1_EL1", stdout, StringComparison.Ordinal);
        Assert.Contains($"0x{va:x} -> 0x{kernelCode:x} (4 KiB page", stdout, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^  L0 .* table$", stdout);
    }

    [Fact]
    public void Marker_value_is_in_ram_where_the_guest_says()
    {
        GroundTruth.MarkerInfo marker = guest.Truth.Marker ?? throw new InvalidOperationException("the arm64 guest printed no marker line");
        using MachineState m = SnapshotLoader.Open(guest.StreamPath);
        byte[] got = new byte[marker.Value.Length];
        m.Memory.ReadExactly(marker.PhysicalAddress, got);
        Assert.Equal(marker.Value, System.Text.Encoding.ASCII.GetString(got));
    }

    [Fact]
    public void Vmcoreinfo_layout_finds_swapper_pg_dir_and_reads_the_release()
    {
        using MachineState m = SnapshotLoader.Open(guest.StreamPath);
        (byte[] note, _) = VmcoreinfoLocator.Find(m, scan: true) ?? throw new InvalidOperationException("no VMCOREINFO in the arm64 guest");
        Linux.Vmcoreinfo info = Linux.Vmcoreinfo.FromNote(note);
        Linux.Arm64KernelLayout layout = Linux.Arm64KernelLayout.FromVmcoreinfo(info) ?? throw new InvalidOperationException("no arm64 layout in VMCOREINFO");
        Assert.Equal(48, layout.VaBits);
        Assert.Equal(0x4000_0000UL, layout.PhysOffset);

        // Without KPTI (-cpu max has E0PD) TTBR1_EL1 holds swapper_pg_dir itself (ASID and CnP aside).
        Assert.Equal(layout.SwapperPgDirPhysical, m.Arm64Cpus[0].Ttbr1El1 & 0x0000_FFFF_FFFF_F000UL);

        // _stext from /proc/kallsyms is an image address: va - kimage_voffset is where /proc/iomem says the code is.
        ulong stext = Field(Truth("ksym").First(t => t.StartsWith("name=_stext ", StringComparison.Ordinal)), "addr");
        Assert.Equal(Field(Truth("iomem").First(t => t.EndsWith("name=Kernel code", StringComparison.Ordinal)), "start"), layout.ImageToPhysical(stext));

        Arm64AddressSpace kernel = layout.KernelAddressSpace(m, m.Arm64Cpus[0]);
        Assert.Equal(guest.Truth.KernelVersion, layout.ReadRelease(kernel, info));

    }

    [Fact]
    public void Kernel_processes_and_nics_match_what_the_guest_printed()
    {
        using MachineState m = SnapshotLoader.Open(guest.StreamPath, new SnapshotOpenOptions { CacheReads = true });
        LinuxKernel k = KernelLocator.Locate(m);
        Assert.Equal(guest.Truth.KernelVersion, k.Release);
        Assert.Equal(guest.Truth.Lines.First(l => l.Key == "banner").Text, k.Banner);
        Assert.NotNull(k.Arm64Layout);

        // The symbols the guest's /proc/kallsyms printed (text ones: Debian's arm64 kernel has no data symbols there).
        foreach (string text in Truth("ksym"))
        {
            string name = Regex.Match(text, @"name=(\S+)").Groups[1].Value;
            KernelSymbol s = k.Symbols.Find(name) ?? throw new Xunit.Sdk.XunitException($"symbol {name} not found");
            Assert.Equal(Field(text, "addr"), s.Address);
        }

        KernelSummary summary = KernelSummary.Read(k);
        Assert.Equal(guest.Truth.Lines.First(l => l.Key == "hostname").Text, summary.Hostname);

        // saved_command_line is a data symbol kallsyms does not have here: no command line (dmesg has it, see below).
        Assert.Null(summary.CommandLine);
        Assert.Equal("aarch64", summary.Machine);
        Assert.Equal((int)Field(guest.Truth.Lines.First(l => l.Key == "cpus").Text, "count"), summary.Cpus.Count);
        Assert.Null(summary.BtfProblem);

        IReadOnlyList<LinuxProcess> processes = ProcessList.Read(k);
        foreach (GroundTruth.Process want in guest.Truth.Processes)
        {
            LinuxProcess got = processes.SingleOrDefault(p => p.Pid == want.Pid) ?? throw new Xunit.Sdk.XunitException($"pid {want.Pid} ({want.Comm}) is missing");
            Assert.Equal((want.Ppid, (uint)want.Uid, (uint)want.Gid, want.Comm, want.Threads), (got.Ppid, got.Uid, got.Gid, got.Comm, got.Threads));
            Assert.Equal(want.StartTicks, (long)(got.StartTimeNs / 10_000_000));
        }

        Assert.All(guest.Truth.Processes.Where(p => p.Comm.StartsWith("vms", StringComparison.Ordinal)), want =>
        {
            char got = processes.Single(p => p.Pid == want.Pid).State;
            Assert.True(want.AllowsLaterState(got), $"pid {want.Pid} ({want.Comm}): printed state {want.State}, snapshot {got}");
        });
        Assert.Equal("/bin/vmsmarker --info /run/vmsmarker.info", processes.Single(p => p.Pid == guest.Truth.Marker!.Pid).Cmdline);

        // /proc/modules: the list head is found from a struct module in the module region (no data symbol for it).
        IReadOnlyList<LinuxModule> modules = ModuleList.Read(k);
        Assert.Equal(guest.Truth.Modules, modules.Select(x => x.Name));
        foreach (GroundTruth.ModuleInfo want in guest.Truth.ModuleDetails)
        {
            LinuxModule got = modules.Single(x => x.Name == want.Name);
            Assert.Equal((want.Name, want.Size, want.References, want.Base), (got.Name, got.Size, got.References, got.Base));
            Assert.Equal(want.State, got.State, ignoreCase: true);
        }

        IReadOnlyList<LinuxNetDevice> nics = NetDeviceList.Read(k);
        Assert.NotEmpty(guest.Truth.Nics);
        foreach (GroundTruth.Nic nic in guest.Truth.Nics)
        {
            LinuxNetDevice got = nics.Single(n => n.Name == nic.Name);
            Assert.Equal((nic.Mac, (uint)nic.Mtu, nic.Flags), (got.Mac, got.Mtu, (uint?)got.Flags));
        }

        // The CLI: ps and pstree name the marker, kernel-info the AArch64 layout.
        (int code, string stdout, string stderr) = VmStateCli.Run(["pstree", guest.StreamPath]);
        Assert.True(code == 0, stderr);
        Assert.Contains($"vmsmarker({guest.Truth.Marker!.Pid})", stdout, StringComparison.Ordinal);
        (code, stdout, stderr) = VmStateCli.Run(["kernel-info", guest.StreamPath]);
        Assert.True(code == 0, stderr);
        Assert.Contains($"swapper_pg_dir 0x{k.Arm64Layout!.SwapperPgDir:x}", stdout, StringComparison.Ordinal);
        Assert.Contains("init_task at 0x", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void A_second_ps_finds_the_kernel_through_the_index_cache_and_prints_the_same()
    {
        // The stream (mostly zero pages) is below IndexCache.DefaultMinimumStreamBytes: no RAM index, but the note is kept.
        string cache = Directory.CreateTempSubdirectory("vmstate-arm64-cache-").FullName;
        try
        {
            (int code, string plain, string stderr) = VmStateCli.Run(["ps", guest.StreamPath, "--no-cache"]);
            Assert.True(code == 0, stderr);
            (code, string first, stderr) = VmStateCli.Run(["ps", guest.StreamPath, "--timings", "--cache-dir", cache]);
            Assert.True(code == 0, stderr);
            Assert.Matches("index cache: note kernel-location-arm64: written \\([0-9]+ bytes\\)", stderr);
            (code, string second, stderr) = VmStateCli.Run(["ps", guest.StreamPath, "--timings", "--cache-dir", cache]);
            Assert.True(code == 0, stderr);
            Assert.Contains("index cache: note kernel-location-arm64: hit", stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("note kernel-location-arm64: written", stderr, StringComparison.Ordinal);
            Assert.Equal(plain, first);
            Assert.Equal(plain, second);

            // The kernel from the note is the one a fresh search finds, with the same evidence and symbols (modules).
            (code, string info1, _) = VmStateCli.Run(["kernel-info", guest.StreamPath, "--json", "--no-cache"]);
            Assert.Equal(0, code);
            (code, string info2, _) = VmStateCli.Run(["kernel-info", guest.StreamPath, "--json", "--cache-dir", cache]);
            Assert.Equal(0, code);
            Assert.Equal(info1, info2);
            (code, string modules1, _) = VmStateCli.Run(["modules", guest.StreamPath, "--no-cache"]);
            Assert.Equal(0, code);
            (code, string modules2, _) = VmStateCli.Run(["modules", guest.StreamPath, "--cache-dir", cache]);
            Assert.Equal(0, code);
            Assert.Equal(modules1, modules2);

            // A note that no longer matches the guest (its banner text changed, the entry's hash made whole again):
            // not believed; the search runs, prints the same and keeps a good note again.
            string notePath = Assert.Single(Directory.GetFiles(cache, "*.note"), f => File.ReadAllBytes(f).AsSpan().IndexOf("Linux version "u8) >= 0);
            byte[] bytes = File.ReadAllBytes(notePath);
            byte[] body = bytes[..^32];
            int at = body.AsSpan().IndexOf("Linux version "u8) + "Linux version ".Length;
            body[at] ^= 0x01;
            File.WriteAllBytes(notePath, [.. body, .. System.Security.Cryptography.SHA256.HashData(body)]);
            (code, string third, stderr) = VmStateCli.Run(["ps", guest.StreamPath, "--timings", "--cache-dir", cache]);
            Assert.True(code == 0, stderr);
            Assert.Contains("index cache: note kernel-location-arm64: hit", stderr, StringComparison.Ordinal);
            Assert.Matches("index cache: note kernel-location-arm64: written \\([0-9]+ bytes\\)", stderr);
            Assert.Equal(plain, third);
        }
        finally
        {
            Directory.Delete(cache, recursive: true);
        }
    }

    [Fact]
    public void Dmesg_holds_the_line_the_guest_logged()
    {
        using MachineState m = SnapshotLoader.Open(guest.StreamPath, new SnapshotOpenOptions { CacheReads = true });
        IReadOnlyList<KernelLogRecord> log = KernelLog.Read(KernelLocator.Locate(m));
        Assert.Equal(Enumerable.Range(0, log.Count).Select(i => (ulong)i), log.Select(r => r.Sequence));
        Assert.Contains(log, r => r.Text == guest.Truth.Lines.First(l => l.Key == "banner").Text);
        KernelLogRecord marker = Assert.Single(log, r => r.Text == guest.Truth.DmesgMarker);
        Assert.Equal((5, 1, "T1"), (marker.Level, marker.Facility, marker.Caller));
        Assert.Contains(log, r => r.Text == $"Kernel command line: {guest.Truth.Lines.First(l => l.Key == "cmdline").Text}");

        (int code, string stdout, string stderr) = VmStateCli.Run(["dmesg", guest.StreamPath]);
        Assert.True(code == 0, stderr);
        Assert.Contains($"] {guest.Truth.DmesgMarker}\n", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Maps_of_the_marker_are_what_its_proc_pid_maps_said()
    {
        int pid = guest.Truth.Marker!.Pid;
        string prefix = $"pid={pid} ";
        var want = Truth("maps").Where(t => t.StartsWith(prefix, StringComparison.Ordinal)).Select(t => t[prefix.Length..].TrimEnd()).ToList();
        Assert.NotEmpty(want);
        (int code, string stdout, string stderr) = VmStateCli.Run(["maps", guest.StreamPath, pid.ToString(CultureInfo.InvariantCulture)]);
        Assert.True(code == 0, stderr);
        Assert.Equal(want, stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd()));
    }

    [Fact]
    public void Procdump_of_the_marker_gives_gdb_multiarch_a_backtrace_through_main()
    {
        GroundTruth.MarkerInfo marker = guest.Truth.Marker!;
        string core = Path.Combine(guest.Dir, "marker.core");
        string exe = Path.Combine(guest.Dir, "marker.exe");
        (int code, string stdout, string stderr) = VmStateCli.Run(["procdump", guest.StreamPath, marker.Pid.ToString(CultureInfo.InvariantCulture), "-o", core, "--exe", exe, "--json"]);
        Assert.True(code == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            Assert.Equal("vmsmarker", doc.RootElement.GetProperty("comm").GetString());
            Assert.StartsWith("pt_regs at 0x", doc.RootElement.GetProperty("threads")[0].GetProperty("registers").GetString(), StringComparison.Ordinal);
        }

        // --exe: the binary from the guest's page cache (struct pages through the arm64 vmemmap) is the one we built.
        string binary = GuestFixture.EnsureArm64().Values["MARKER_BIN"];
        Assert.Equal(File.ReadAllBytes(binary), File.ReadAllBytes(exe));

        (int gdbCode, string output) = GdbBatch.RunWith("gdb-multiarch", string.Empty, $"file {binary}", $"core-file {core}", "bt", "print/x g_value", "x/s g_marker_buf", "info auxv", "x/4c g_page_map", "info registers pauth_cmask");
        Assert.True(gdbCode == 0, output);
        Assert.Matches(@"#\d+ +0x[0-9a-f]+ in main \(", output);
        Assert.Contains("= 0x1122334455667788", output, StringComparison.Ordinal);
        Assert.Contains($"\"{marker.Value}\"", output, StringComparison.Ordinal);
        Assert.Contains("AT_ENTRY", output, StringComparison.Ordinal);
        Assert.Contains("77 'M'\t77 'M'", output, StringComparison.Ordinal);
        Assert.DoesNotContain("corrupt", output, StringComparison.Ordinal);

        // -cpu max has PAuth and the kernel enables the user keys: the core says which bits are the signature
        // (NT_ARM_PAC_MASK, bits 54..48 with 48-bit user addresses), as the kernel's own core dumps do.
        Assert.Matches(@"pauth_cmask +0x7f000000000000", output);

        // NT_FPREGSET: the marker loads v31 with its value's 16 hex digits (as ASCII), FPCR 0x00c00000 and FPSR
        // 0x08000000 right before each sleep (eng/guest/marker.c); it sleeps, so they come from the task's saved state.
        string digits = marker.Value["VMSTATE-MARKER-".Length..];
        string bytes = string.Join(", ", digits.Select(ch => $"0x{(int)ch:x}"));
        (int fpCode, string fp) = GdbBatch.RunWith("gdb-multiarch", string.Empty, $"file {binary}", $"core-file {core}", "p/x $v31.b.u", "p/x $fpcr", "p/x $fpsr");
        Assert.True(fpCode == 0, fp);
        Assert.Contains($"= {{{bytes}}}", fp, StringComparison.Ordinal);
        Assert.Matches(@"\$2 = 0xc00000\b", fp);
        Assert.Matches(@"\$3 = 0x8000000\b", fp);
    }

    [Fact]
    public void Read_translate_and_search_with_pid_use_the_process_tables()
    {
        GroundTruth.MarkerInfo marker = guest.Truth.Marker!;
        string pid = marker.Pid.ToString(CultureInfo.InvariantCulture);
        string va = $"0x{marker.VirtualAddress:x}";
        (int code, string stdout, string stderr) = VmStateCli.Run(["read", guest.StreamPath, "--pid", pid, "--va", va, marker.Value.Length.ToString(CultureInfo.InvariantCulture), "-f", "raw"]);
        Assert.True(code == 0, stderr);
        Assert.Equal(marker.Value, stdout);

        (code, stdout, stderr) = VmStateCli.Run(["translate", guest.StreamPath, va, "--pid", pid, "--json"]);
        Assert.True(code == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            Assert.Equal($"0x{marker.PhysicalAddress:x}", doc.RootElement.GetProperty("physicalAddress").GetString());
            Assert.Equal("TTBR0_EL1", doc.RootElement.GetProperty("tableBase").GetString());
        }

        (code, stdout, stderr) = VmStateCli.Run(["search", marker.Value, guest.StreamPath, "--pid", pid, "--json"]);
        Assert.True(code == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            Assert.Contains(doc.RootElement.GetProperty("hits").EnumerateArray(), h =>
                h.GetProperty("virtual").GetString() == va && h.GetProperty("physical").GetString() == $"0x{marker.PhysicalAddress:x}");
        }

        // A text symbol (kallsyms has them) read through the kernel's own tables.
        ulong stext = Field(Truth("ksym").First(t => t.StartsWith("name=_stext ", StringComparison.Ordinal)), "addr");
        (code, stdout, stderr) = VmStateCli.Run(["read", guest.StreamPath, "--sym", "_stext", "4"]);
        Assert.True(code == 0, stderr);
        Assert.StartsWith($"{stext:x16}", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Edited_memory_and_macs_are_what_the_resumed_guest_shows()
    {
        const string NewVirtioMac = "52:54:00:de:ad:01";
        const string NewE1000Mac = "52:54:00:be:ef:02";
        const ulong NewValue = 0x0123456789abcdef;
        GroundTruth.MarkerInfo marker = guest.Truth.Marker!;

        // g_value written through vCPU 0's TTBR1_EL1 walk, at its linear-map address.
        ulong linear;
        using (MachineState m = SnapshotLoader.Open(guest.StreamPath))
        {
            (byte[] note, _) = VmcoreinfoLocator.Find(m, scan: true) ?? throw new InvalidOperationException("no VMCOREINFO");
            Linux.Arm64KernelLayout layout = Linux.Arm64KernelLayout.FromVmcoreinfo(Linux.Vmcoreinfo.FromNote(note))!;
            linear = layout.PageOffset + (marker.GValuePhysicalAddress - layout.PhysOffset);
        }

        string edited = Path.Combine(guest.Dir, "edited.mig");
        (int code, string stdout, string stderr) = VmStateCli.Run(
        [
            "edit", guest.StreamPath, "-o", edited, "--json",
            "--set-u64-va", $"0x{linear:x}=0x{NewValue:x}",
            "--set-mac", $"virtio-net={NewVirtioMac}",
            "--set-mac", $"e1000={NewE1000Mac}",
            "--guest",
        ]);
        Assert.True(code == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            // g_value's page, and the pages of the kernel's dev_addr / perm_addr copies of both MACs.
            Assert.InRange(doc.RootElement.GetProperty("pagesChanged").GetInt32(), 2, 5);
        }

        Assert.Equal(new FileInfo(guest.StreamPath).Length, new FileInfo(edited).Length);
        await using QemuGuest resumed = await IncomingAsync(edited);
        await resumed.ResumeAsync();
        await resumed.WaitForSerialLineAsync(l => l.StartsWith("VMSMARKER tick=", StringComparison.Ordinal) && l.EndsWith($"value=0x{NewValue:x16}", StringComparison.Ordinal), TimeSpan.FromSeconds(60));

        // The guest prints its interfaces' addresses (/sys/class/net/*/address) with every tick.
        await resumed.WaitForSerialLineAsync(l => l == $"VMSTATE-MACS eth0={NewVirtioMac},eth1={NewE1000Mac}", TimeSpan.FromSeconds(60));
        JsonElement filters = await resumed.Qmp.ExecuteAsync("query-rx-filter");
        Assert.Contains(filters.EnumerateArray(), f => f.GetProperty("main-mac").GetString() == NewVirtioMac);
    }

    [Fact]
    public async Task Injected_registers_system_registers_and_memory_are_what_qemu_loads()
    {
        const ulong NewValue = 0x00c0ffee00c0ffee;
        const ulong NewX9 = 0x5a5a_0000_1234_5678;
        const ulong NewTpidrro = 0x0000_ffff_8000_1000;
        string dir = Path.Combine(guest.Dir, "inject");
        (int code, string stdout, string stderr) = VmStateCli.Run(["extract", guest.StreamPath, "-o", dir]);
        Assert.True(code == 0, stderr);

        // The core: g_value's bytes, and x9 in vCPU 0's NT_PRSTATUS (found by its x0..x3, which follow one another there).
        string corePath = Path.Combine(dir, "core.elf");
        byte[] core = File.ReadAllBytes(corePath);
        BinaryPrimitives.WriteUInt64LittleEndian(core.AsSpan((int)InjectTests.FileOffsetOf(core, guest.Truth.Marker!.GValuePhysicalAddress)), NewValue);
        byte[] x0to3 = new byte[32];
        for (int i = 0; i < 4; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(x0to3.AsSpan(i * 8), guest.Registers[0][$"X{i:00}"]);
        }

        int regs = core.AsSpan(0, 1 << 16).IndexOf(x0to3);
        Assert.True(regs > 0, "vCPU 0's registers are not in the core's notes");
        BinaryPrimitives.WriteUInt64LittleEndian(core.AsSpan(regs + (9 * 8)), NewX9);
        File.WriteAllBytes(corePath, core);

        // hardware.json: a system register of vCPU 1 (TPIDRRO_EL0; Linux rewrites it only when it switches to a task).
        string hwPath = Path.Combine(dir, "hardware.json");
        JsonNode hw = JsonNode.Parse(File.ReadAllText(hwPath))!;
        hw["cpus"]![1]!["systemRegisters"]!["TPIDRRO_EL0"] = $"0x{NewTpidrro:x}";
        File.WriteAllText(hwPath, hw.ToJsonString());

        string injected = Path.Combine(guest.Dir, "injected.mig");
        (code, stdout, stderr) = VmStateCli.Run(["inject", guest.StreamPath, "--core", corePath, "--hardware", hwPath, "-o", injected, "--json"]);
        Assert.True(code == 0, stderr);
        using (JsonDocument summary = JsonDocument.Parse(stdout))
        {
            Assert.Equal(1, summary.RootElement.GetProperty("pagesChanged").GetInt32());
            Assert.Equal(2, summary.RootElement.GetProperty("registersChanged").GetInt32());
            Assert.Equal(0, summary.RootElement.GetProperty("fieldsChanged").GetInt32());
        }

        // QEMU loads it (its cpu_post_load writes the cpreg list into the CPU), and saves what it holds: the values
        // come back through QEMU's own CPU state, not just our stream.
        await using QemuGuest loaded = await IncomingAsync(injected);
        string resaved = Path.Combine(guest.Dir, "injected-resaved.mig");
        await loaded.MigrateToFileAsync(resaved);
        await loaded.QuitAsync();
        using MachineState m = SnapshotLoader.Open(resaved);
        Assert.Equal(NewX9, m.Arm64Cpus[0].X[9]);
        Assert.Equal(guest.Registers[0]["X10"], m.Arm64Cpus[0].X[10]);
        Assert.Equal(guest.Registers[0]["PC"], m.Arm64Cpus[0].Pc);
        Assert.Equal(NewTpidrro, m.Arm64Cpus[1].GetRegister("TPIDRRO_EL0"));
        byte[] value = new byte[8];
        m.Memory.ReadExactly(guest.Truth.Marker!.GValuePhysicalAddress, value);
        Assert.Equal(NewValue, BinaryPrimitives.ReadUInt64LittleEndian(value));
    }

    [Fact]
    public async Task Edited_vector_fpsr_and_fpcr_are_what_qemu_loads()
    {
        // vCPU 1: v5 (128 bits), FPSR (QC, UFC, DZC, IOC) and FPCR (DN, FZ, RMode=1, FZ16), values the guest does not hold.
        UInt128 v5 = new(0x0011_2233_4455_6677, 0x8899_aabb_ccdd_eeff);
        const ulong NewFpsr = 0x0800_000B, NewFpcr = 0x0348_0000;
        IReadOnlyDictionary<string, ulong> was = guest.Registers[1];
        Assert.NotEqual((NewFpsr, NewFpcr), (was["FPSR"], was["FPCR"]));
        string edited = Path.Combine(guest.Dir, "edited-fp.mig");
        (int code, string stdout, string stderr) = VmStateCli.Run(
        [
            "edit", guest.StreamPath, "-o", edited, "--json",
            "--set-reg", "1:v5=0x0011223344556677_8899aabbccddeeff", "--set-reg", $"1:fpsr=0x{NewFpsr:x}", "--set-reg", $"1:FPCR=0x{NewFpcr:x}",
        ]);
        Assert.True(code == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            // d[0] and d[1] of env.vfp.zregs[5], the one fpscr word FPSR and FPCR share in the vfp subsection, and
            // their copies in the cpreg list (which QEMU loads last).
            Assert.Equal(5, doc.RootElement.GetProperty("fieldsChanged").GetInt32());
            Assert.Equal(0, doc.RootElement.GetProperty("pagesChanged").GetInt32());
        }

        // QEMU's own view of the loaded state (its vfp_set_fpscr split the word again; -cpu max has SVE, so it prints Z5).
        await using QemuGuest loaded = await IncomingAsync(edited);
        string text = await loaded.Qmp.HumanMonitorCommandAsync("info registers -a");
        await loaded.QuitAsync();
        IReadOnlyList<IReadOnlyDictionary<string, ulong>> now = Arm64GuestFixture.ParseRegisters(text);
        Assert.Equal((ulong)v5, now[1]["V05.lo"]);
        Assert.Equal((ulong)(v5 >> 64), now[1]["V05.hi"]);
        Assert.Equal(NewFpsr, now[1]["FPSR"]);
        Assert.Equal(NewFpcr, now[1]["FPCR"]);
        foreach (string r in new[] { "V04.lo", "V06.hi", "X05", "PC" })
        {
            Assert.Equal(was[r], now[1][r]);
        }

        Assert.Equal(guest.Registers[0], now[0]);

        // Z5 above its low 128 bits: what the snapshot's cpu/sve subsection holds, as it was before the edit.
        ulong[] z5 = ZWords(text, cpu: 1, n: 5);
        using MachineState original = SnapshotLoader.Open(guest.StreamPath);
        DeviceField high = original.Devices.Single(d => d.IdStr == "cpu" && d.InstanceId == 1).State!.Subsection("cpu/sve")!.Field("env.vfp.zregs")!.Elements![5];
        ulong[] saved = [.. high.Struct!.Field("d")!.Elements!.Select(e => e.Integer)];
        Assert.True(z5.Length > 2, $"QEMU printed no SVE bits of Z5: {z5.Length} doublewords");
        Assert.Equal(saved.Take(z5.Length - 2), z5.Skip(2));
    }

    // The doublewords of Z<n> of CPU#<cpu> in QEMU 7.2's "info registers -a" (aarch64_cpu_dump_state), d[0] first:
    // "Z05=d1:d0" or "Z05=d3:d2:d1:d0", or in chunks "Z05[f-e]=d31:d30:d29:d28" then "   [d-c]=…" lines.
    /// <summary>
    /// The general, FP/SIMD and status registers of one vCPU are what QEMU's <c>info registers -a</c> printed for it
    /// at the same pause (both the stream and the savevm snapshot are taken there).
    /// </summary>
    private static void RegistersAreWhatQemuReported(Arm64CpuState c, IReadOnlyDictionary<string, ulong> q)
    {
        Assert.Equal(q["PC"], c.Pc);
        Assert.Equal(q["SP"], c.Sp);
        Assert.Equal(q["PSTATE"], c.Pstate);
        for (int x = 0; x <= 30; x++)
        {
            Assert.Equal(q[$"X{x:00}"], c.X[x]);
        }

        Assert.Equal(q["FPSR"], c.Fpsr);
        Assert.Equal(q["FPCR"], c.Fpcr);
        for (int v = 0; v < 32; v++)
        {
            Assert.Equal(q[$"V{v:00}.lo"], BinaryPrimitives.ReadUInt64LittleEndian(c.V.AsSpan(v * 16)));
            Assert.Equal(q[$"V{v:00}.hi"], BinaryPrimitives.ReadUInt64LittleEndian(c.V.AsSpan((v * 16) + 8)));
        }
    }

    private static ulong[] ZWords(string text, int cpu, int n)
    {
        var words = new List<ulong>();
        bool inCpu = false, inZ = false;
        foreach (string line in text.Split('\n'))
        {
            if (line.StartsWith("CPU#", StringComparison.Ordinal))
            {
                inCpu = line.StartsWith($"CPU#{cpu}", StringComparison.Ordinal);
                inZ = false;
                continue;
            }

            if (!inCpu)
            {
                continue;
            }

            inZ = line.StartsWith($"Z{n:00}", StringComparison.Ordinal) || (inZ && line.TrimStart().StartsWith('['));
            if (inZ)
            {
                foreach (Match m in Regex.Matches(line[line.IndexOf('=', StringComparison.Ordinal)..], "[0-9a-f]{16}"))
                {
                    words.Add(ulong.Parse(m.Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                }
            }
        }

        words.Reverse();
        return [.. words];
    }

    /// <summary>
    /// What crash 8.0.6 (built with target=ARM64; docs/user-guide.md shows its run on this core) needs of an AArch64 ELF
    /// core: the VMCOREINFO note with the numbers its arm64.c reads (without the note it stops at "kimage_voffset
    /// cannot be determined from the dumpfile" and "vmlinux and core do not match"), consistent with the core's RAM:
    /// the check crash makes itself, init_uts_ns through kimage_voffset, finds "Linux" and the note's OSRELEASE.
    /// </summary>
    private void CoreHasWhatCrashNeeds(MachineState core, Vmcoreinfo info)
    {
        foreach (string key in new[] { "NUMBER(VA_BITS)", "NUMBER(kimage_voffset)", "NUMBER(PHYS_OFFSET)", "NUMBER(TCR_EL1_T1SZ)", "NUMBER(KERNELPACMASK)", "NUMBER(MODULES_VADDR)", "NUMBER(MODULES_END)", "NUMBER(VMALLOC_START)", "NUMBER(VMALLOC_END)", "NUMBER(VMEMMAP_START)", "NUMBER(VMEMMAP_END)", "NUMBER(SECTION_SIZE_BITS)", "NUMBER(MAX_PHYSMEM_BITS)", "KERNELOFFSET", "OSRELEASE", "SYMBOL(init_uts_ns)" })
        {
            Assert.True(info.Contains(key), $"VMCOREINFO lacks {key}, which crash's arm64 support reads");
        }

        Assert.Equal(guest.Truth.KernelVersion, info.OsRelease);
        ulong Hex(string key) => ulong.Parse(info.Get(key)!.Replace("0x", string.Empty, StringComparison.Ordinal), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        ulong utsPhysical = info.Symbol("init_uts_ns")!.Value + (ulong)(info.Offset("uts_namespace.name") ?? 0) - Hex("NUMBER(kimage_voffset)");
        byte[] uts = new byte[65 * 3];
        core.Memory.ReadExactly(utsPhysical, uts);
        string UtsField(int i) => System.Text.Encoding.ASCII.GetString(uts, i * 65, 65).TrimEnd('\0');
        Assert.Equal(("Linux", info.OsRelease), (UtsField(0), UtsField(2)));

        // Linear-map addresses: crash takes (va - PAGE_OFFSET) + PHYS_OFFSET, so PHYS_OFFSET must not lie above the RAM
        // the core's PT_LOADs hold (here it is the virt machine's RAM base).
        Assert.Equal(core.Memory.Ranges.Min(r => r.Start), Hex("NUMBER(PHYS_OFFSET)"));
    }

    /// <summary>A qemu-system-aarch64 like the fixture's, loading <paramref name="stream"/> (-incoming), paused when it returns.</summary>
    private async Task<QemuGuest> IncomingAsync(string stream)
    {
        QemuGuest g = await QemuGuest.StartAsync(new QemuGuestOptions { Arm64 = true, MemoryMiB = 256, CpuModel = "max", Incoming = stream });
        var clock = Stopwatch.StartNew();
        while (await VmState.Live.QemuMonitor.QueryStatusAsync(g.Qmp) is "inmigrate")
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "the incoming migration did not finish");
            await Task.Delay(50);
        }

        return g;
    }

    private IEnumerable<string> Truth(string key) => guest.Truth.Lines.Where(l => l.Key == key).Select(l => l.Text);

    private static ulong Field(string text, string name)
    {
        Match m = Regex.Match(text, $@"\b{name}=(0x)?([0-9a-f]+)");
        Assert.True(m.Success, $"no {name}= in \"{text}\"");
        return ulong.Parse(m.Groups[2].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
    }

    private static void MemoryRangeIs(MachineState m, string iomem)
    {
        ulong start = Field(iomem, "start"), end = Field(iomem, "end");
        Assert.Contains(m.Memory.Ranges, r => r.Start == start && r.End == end + 1);
    }
}

/// <summary>The same guest on -cpu cortex-a57: no PAuth, a 44-bit PA range, so KASLR also moves the linear map.</summary>
public sealed class Arm64CortexA57Fixture : Arm64GuestFixture
{
    protected override string CpuModel => "cortex-a57";

    protected override bool KeepRunning => false;
}

/// <summary>
/// The second CPU case of the arm64 guest (-cpu cortex-a57, KASLR on): with a 44-bit physical range KASLR
/// randomizes the linear map too (PHYS_OFFSET becomes a negative memstart_addr), and the kernel's layout from
/// VMCOREINFO still translates image and linear-map addresses to where the guest says they are.
/// </summary>
public sealed class Arm64CortexA57Tests(Arm64CortexA57Fixture guest) : IClassFixture<Arm64CortexA57Fixture>
{
    [Fact]
    public void Kernel_layout_translates_image_and_linear_addresses()
    {
        using MachineState m = SnapshotLoader.Open(guest.StreamPath);
        Assert.Equal(CpuArchitecture.Arm64, m.Architecture);
        for (int i = 0; i < m.Arm64Cpus.Count; i++)
        {
            Assert.Equal(guest.Registers[i]["PC"], m.Arm64Cpus[i].Pc);
            Assert.Equal(guest.Registers[i]["X30"], m.Arm64Cpus[i].X[30]);
        }

        (byte[] note, _) = VmcoreinfoLocator.Find(m, scan: true) ?? throw new InvalidOperationException("no VMCOREINFO");
        Linux.Vmcoreinfo info = Linux.Vmcoreinfo.FromNote(note);
        Linux.Arm64KernelLayout layout = Linux.Arm64KernelLayout.FromVmcoreinfo(info) ?? throw new InvalidOperationException("no arm64 layout");
        Arm64AddressSpace kernel = layout.KernelAddressSpace(m, m.Arm64Cpus[0]);
        Assert.Equal(guest.Truth.KernelVersion, layout.ReadRelease(kernel, info));

        string stext = guest.Truth.Lines.First(l => l.Key == "ksym" && l.Text.StartsWith("name=_stext ", StringComparison.Ordinal)).Text;
        ulong va = ulong.Parse(Regex.Match(stext, "addr=0x([0-9a-f]+)").Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        Arm64Translation t = kernel.Translate(va);
        Assert.True(t.Success, t.Failure);
        Assert.Equal(layout.ImageToPhysical(va), t.PhysicalAddress);

        // The linear map of RAM's first page, wherever KASLR put it: PAGE_OFFSET + (0x40000000 - PHYS_OFFSET).
        ulong linear = layout.PageOffset + (0x4000_0000UL - layout.PhysOffset);
        Assert.True(kernel.TryTranslate(linear + 0x1008, out ulong pa), $"0x{linear:x} is not mapped");
        Assert.Equal(0x4000_1008UL, pa);
        Assert.Equal(pa, layout.LinearToPhysical(linear + 0x1008));
    }
}
