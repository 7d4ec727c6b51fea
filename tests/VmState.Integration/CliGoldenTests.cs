using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using VmState.Integration.Harness;
using Xunit.Abstractions;

namespace VmState.Integration;

/// <summary>
/// One paused fixture guest saved as a migration stream, QEMU's ELF dump, a qcow2 image with a savevm snapshot and
/// a truncated copy of the stream, for <see cref="CliGoldenTests"/>; also the baseline CLI it compares against.
/// </summary>
public sealed class GoldenGuestFixture : IAsyncLifetime
{
    /// <summary>The variable eng/test.sh sets to the vmstate.dll that eng/golden-baseline.sh built.</summary>
    public const string BaselineVariable = "VMSTATE_GOLDEN_BASELINE";

    public const string SnapshotTag = "golden";

    public string Dir { get; } = Directory.CreateTempSubdirectory("vmstate-golden-").FullName;

    public GroundTruth Truth { get; private set; } = null!;

    public string BaselineDll { get; private set; } = string.Empty;

    public string StreamPath => Path.Combine(Dir, "guest.mig");

    public string DumpPath => Path.Combine(Dir, "guest.elf");

    public string DiskPath => Path.Combine(Dir, "disk.qcow2");

    public string TruncatedPath => Path.Combine(Dir, "truncated.mig");

    /// <summary>Where the commands that write files write them; each run gets it empty.</summary>
    public string OutputDir => Path.Combine(Dir, "out");

    /// <summary>Wall time of the guest boot and the saves, reported with the class's time.</summary>
    public TimeSpan SetupTime { get; private set; }

    public async Task InitializeAsync()
    {
        // Checked before the boot: without the baseline there is nothing to compare with, and a skip would let a
        // run without it pass unnoticed.
        string? dll = Environment.GetEnvironmentVariable(BaselineVariable);
        if (string.IsNullOrEmpty(dll) || !File.Exists(dll))
        {
            throw new InvalidOperationException(
                $"{BaselineVariable} is {(string.IsNullOrEmpty(dll) ? "not set" : $"'{dll}', which does not exist")}: run eng/golden-baseline.sh "
                + $"and set {BaselineVariable} to the vmstate.dll path it prints (eng/test.sh does both)");
        }

        BaselineDll = dll;
        var clock = Stopwatch.StartNew();
        Process.Start("qemu-img", ["create", "-q", "-f", "qcow2", DiskPath, "64M"]).WaitForExit();
        await using (QemuGuest guest = await QemuGuest.StartAsync(new QemuGuestOptions { DiskPath = DiskPath }))
        {
            await guest.WaitForReadyAsync(TimeSpan.FromSeconds(180));
            Truth = guest.Truth;
            await guest.PauseAsync();
            await guest.DumpGuestMemoryAsync(DumpPath);
            await guest.SaveVmAsync(SnapshotTag);
            await guest.MigrateToFileAsync(StreamPath);
            await guest.QuitAsync();
        }

        // A third of the stream ends inside the RAM section: what a copy cut short by a full disk looks like.
        using (FileStream from = File.OpenRead(StreamPath))
        using (FileStream to = File.Create(TruncatedPath))
        {
            byte[] buffer = new byte[1 << 20];
            long left = from.Length / 3;
            while (left > 0)
            {
                int n = from.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
                to.Write(buffer, 0, n);
                left -= n;
            }
        }

        SetupTime = clock.Elapsed;
    }

    public Task DisposeAsync()
    {
        if (Environment.GetEnvironmentVariable("VMSTATE_KEEP_WORK") != "1")
        {
            Directory.Delete(Dir, recursive: true);
        }

        return Task.CompletedTask;
    }
}

/// <summary>
/// The CLI's output must not change unless on purpose: every read-only command (and the file-writing ones), in
/// text and --json form and in its error cases, is run on the same snapshots by the CLI of the commit pinned in
/// eng/golden-baseline.txt and by the current one, and exit code, stdout, stderr and written files must be equal.
/// Intended differences are allowed where a case says so (<c>KernelVirtualPaddr</c>: one header field of
/// extract's kernel-virtual PT_LOADs; <c>CoreLayout</c>: where in extract's core the segments' bytes are; <c>AddedCommands</c>: a new command's line in
/// the help). The only thing not compared is wall time: the "parseSeconds"/"seconds" fields of --json summaries, the
/// "done in N s (N GB/s ...)" line of extract and the "in N s" end of procdump's summary line.
/// One intended change is allowed, and only in the cases marked <see cref="Case.ProcNames"/> (ps, pstree): tasks are
/// shown by the name the guest's /proc shows (workqueue workers with their "-wq"/"+wq" suffix, kthreads' full names)
/// where the baseline showed comm, and the JSON has a "name" field before "comm". In those cases the current output
/// has each such name put back to its comm (the pairs come from the current CLI's own ps --threads --json) and the
/// "name" field right before "comm" removed, and everything else is compared as in every other case; the change
/// must be present (so the allowance cannot hide output that lost the names).
/// </summary>
public sealed class CliGoldenTests(GoldenGuestFixture guest, ITestOutputHelper log) : IClassFixture<GoldenGuestFixture>
{
    /// <summary>What a case expects of the exit code, so a case that fails the same way in both CLIs is still noticed.</summary>
    private enum Exit
    {
        Success,
        Failure,
    }

    /// <summary>
    /// A command line with placeholders ({mig}, {elf}, {qcow2}, {truncated}, {missing}, {out}, {pid}, {maddr},
    /// {mpaddr}, {banner}), the exit it must have, the files it writes under {out}, whether it prints timings, and
    /// whether its core.elf has the one intended difference <see cref="WithKernelVirtualPaddr"/> describes.
    /// </summary>
    /// <param name="ProcNames">The output lists tasks: /proc names and the JSON "name" field are the one intended difference.</param>
    /// <param name="CoreLayout">The core's layout (where in the file each segment's bytes are, and so the file size) is the one intended difference (<see cref="AssertSameCore"/>).</param>
    /// <param name="AddedCommands">Commands added since the baseline (the help lists them): each must have its line in the current output, which is removed before the comparison.</param>
    /// <param name="ChangedUsage">Commands whose arguments' line in the help changed on purpose (types: NAME follows the snapshot, which --qmp leaves out, as PID does for procdump): each must have its line in both outputs, and both are removed before the comparison.</param>
    private sealed record Case(string Args, Exit Exit = Exit.Success, string[]? Files = null, bool Timings = false, bool KernelVirtualPaddr = false, bool ProcNames = false, bool CoreLayout = false, string[]? AddedCommands = null, string[]? ChangedUsage = null);

    private static readonly Dictionary<string, Case> s_cases = new(StringComparer.Ordinal)
    {
        ["help"] = new("--help", AddedCommands: ["trace", "record", "mount", "umount", "history", "search", "list", "fleet", "rr", "fork", "agent", "serve"], ChangedUsage: ["types"]),
        ["info mig"] = new("info {mig}"),
        ["info mig json"] = new("info {mig} --json"),
        ["info elf"] = new("info {elf}"),
        ["info elf json"] = new("info {elf} --json"),
        ["info qcow2"] = new("info {qcow2}"),
        ["info qcow2 snapshot json"] = new("info {qcow2} --snapshot golden --json"),
        ["snapshots"] = new("snapshots {qcow2}"),
        ["snapshots json"] = new("snapshots {qcow2} --json"),
        ["translate kernel explain"] = new("translate {mig} {banner} --explain"),
        ["translate kernel explain json"] = new("translate {mig} {banner} --explain --json"),
        ["translate process"] = new("translate {mig} {maddr} --pid {pid} --explain"),
        ["read pa"] = new("read {mig} {mpaddr} 64 --pa"),
        ["read va"] = new("read {mig} {banner} 128 --va"),
        ["read va process"] = new("read {mig} {maddr} 64 --va --pid {pid}"),
        ["read sym hex"] = new("read {mig} init_task+0x10 64 --sym -f hex"),
        ["read sym"] = new("read {mig} linux_banner 160 --sym"),
        ["read sym asm"] = new("read {mig} _text 48 --sym -f asm"),
        ["kernel-info"] = new("kernel-info {mig}"),
        ["kernel-info json"] = new("kernel-info {mig} --json"),
        ["kernel-info elf"] = new("kernel-info {elf}"),
        ["ps"] = new("ps {mig}", ProcNames: true),
        ["ps json"] = new("ps {mig} --json", ProcNames: true),
        ["ps threads"] = new("ps {mig} --threads", ProcNames: true),
        ["ps threads json"] = new("ps {mig} --threads --json", ProcNames: true),
        ["ps elf"] = new("ps {elf}", ProcNames: true),
        ["pstree"] = new("pstree {mig}", ProcNames: true),
        ["pstree json"] = new("pstree {mig} --json", ProcNames: true),
        ["symbols glob"] = new("symbols {mig} init_*"),
        ["symbols glob json"] = new("symbols {mig} init_* --json"),
        ["symbols address"] = new("symbols {mig} --address {banner}"),
        ["types task_struct"] = new("types {mig} task_struct"),
        ["types task_struct json"] = new("types {mig} task_struct --json"),
        ["types list_head"] = new("types {mig} struct list_head"),
        ["types module e1000"] = new("types {mig} e1000_adapter --module e1000"),
        ["modules"] = new("modules {mig}"),
        ["modules json"] = new("modules {mig} --json"),
        ["netdev"] = new("netdev {mig}"),
        ["netdev json"] = new("netdev {mig} --json"),
        ["dmesg tail"] = new("dmesg {mig} --tail 20"),
        ["dmesg tail json"] = new("dmesg {mig} --tail 20 --json"),
        ["dmesg level"] = new("dmesg {mig} --level 4 --show-level"),
        ["maps"] = new("maps {mig} {pid}"),
        ["maps json"] = new("maps {mig} {pid} --json"),
        ["extract"] = new("extract {mig} -o {out}", Files: ["core.elf", "hardware.json"], Timings: true, KernelVirtualPaddr: true, CoreLayout: true),
        ["extract xml json"] = new("extract {mig} -o {out} --xml --json", Files: ["core.elf", "hardware.json", "hardware.xml"], Timings: true, KernelVirtualPaddr: true, CoreLayout: true),
        ["extract no kernel vaddr"] = new("extract {mig} -o {out} --no-kernel-vaddr", Files: ["core.elf", "hardware.json"], Timings: true, CoreLayout: true),
        ["procdump"] = new("procdump {mig} {pid} -o {out}/marker.core", Files: ["marker.core"], Timings: true),
        ["procdump json"] = new("procdump {mig} {pid} -o {out}/marker.core --json", Files: ["marker.core"], Timings: true),
        ["edit"] = new("edit {mig} -o {out}/edited.mig --write-pa {mpaddr}=474f4c44 --set-reg 0:rax=0x1234 --set-mac e1000=52:54:00:11:22:33 --guest", Files: ["edited.mig"]),
        ["edit json"] = new("edit {mig} -o {out}/edited.mig --set-reg 1:rbx=0x42 --json", Files: ["edited.mig"]),
        ["error missing file"] = new("info {missing}", Exit.Failure),
        ["error missing file ps"] = new("ps {missing}", Exit.Failure),
        ["error truncated info"] = new("info {truncated}", Exit.Failure),
        ["error truncated ps"] = new("ps {truncated}", Exit.Failure),
        ["error non-canonical va"] = new("read {mig} 0xdead000000000000 16 --va", Exit.Failure),
        ["error pa beyond ram"] = new("read {mig} 0x7fff00000000 16 --pa", Exit.Failure),
        ["error unmapped translate"] = new("translate {mig} 0x10 --explain", Exit.Failure),
        ["error address syntax"] = new("read {mig} zz 16 --pa", Exit.Failure),
        ["error unknown symbol"] = new("read {mig} no_such_symbol 16 --sym", Exit.Failure),
        ["error unknown type"] = new("types {mig} no_such_type", Exit.Failure),
        ["error no such pid"] = new("maps {mig} 99999", Exit.Failure),
    };

    // Both CLIs see the same terminal type: the baseline styles redirected output when TERM names a colour terminal.
    private static readonly Dictionary<string, string> s_plainTerminal = new(StringComparer.Ordinal) { ["TERM"] = "dumb" };

    private static readonly Regex s_coreBytes = new("\"coreBytes\": ([0-9]+)", RegexOptions.CultureInvariant);

    // Wall time is the one thing two runs of the same CLI do not share; each pattern keeps the key or the text
    // around the number, so a field or line that disappears is still a difference.
    private static readonly (Regex Pattern, string Replacement)[] s_timings =
    [
        (new Regex("\"(parseSeconds|seconds)\": [-0-9.eE+]+", RegexOptions.CultureInvariant), "\"$1\": <time>"),
        (new Regex(@"^done in [0-9.]+ s \([0-9.]+ GB/s of guest RAM\)$", RegexOptions.Multiline | RegexOptions.CultureInvariant), "done in <time> s (<time> GB/s of guest RAM)"),
        (new Regex(@"(?<=^wrote .* bytes) in [0-9.]+ s$", RegexOptions.Multiline | RegexOptions.CultureInvariant), " in <time> s"),
    ];

    /// <summary>A "name" property directly followed by "comm" (ps and pstree JSON): the one field the baseline did not have.</summary>
    private static readonly Regex s_nameField = new(@"^ *""name"": ""(?:[^""\\]|\\.)*"",\n(?= *""comm"": )", RegexOptions.Multiline | RegexOptions.CultureInvariant);

    private readonly Lazy<(int Pid, string Name, string Comm)[]> _renamed = new(() =>
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(["ps", guest.StreamPath, "--threads", "--json"]);
        Assert.True(code == 0, stderr);
        using JsonDocument doc = JsonDocument.Parse(stdout);
        return [.. doc.RootElement.GetProperty("processes").EnumerateArray()
            .Select(p => (p.GetProperty("pid").GetInt32(), p.GetProperty("name").GetString()!, p.GetProperty("comm").GetString()!))
            .Where(p => p.Item2 != p.Item3)];
    });

    public static TheoryData<string> Cases()
    {
        var data = new TheoryData<string>();
        foreach (string name in s_cases.Keys)
        {
            data.Add(name);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void SameOutputAsTheBaseline(string name)
    {
        Case c = s_cases[name];
        string[] args = Expand(c.Args);
        var clock = Stopwatch.StartNew();
        string baselineOut = guest.OutputDir + ".baseline";
        ResetDirectory(baselineOut);
        ResetDirectory(guest.OutputDir);
        (int ExitCode, string Stdout, string Stderr) want = VmStateCli.RunDll(guest.BaselineDll, args, s_plainTerminal);
        // Both CLIs write to the same path, since paths appear in the output; the baseline's files are moved aside.
        Directory.Delete(baselineOut);
        Directory.Move(guest.OutputDir, baselineOut);
        Directory.CreateDirectory(guest.OutputDir);
        (int ExitCode, string Stdout, string Stderr) got = VmStateCli.Run(args, s_plainTerminal);
        log.WriteLine($"{name}: {clock.Elapsed.TotalSeconds:F1} s for both CLIs (fixture set-up took {guest.SetupTime.TotalSeconds:F1} s)");
        log.WriteLine($"exit {got.ExitCode}, {got.Stdout.Split('\n').Length - 1} stdout lines, stderr: {got.Stderr.Split('\n')[0]}");

        Assert.True(want.ExitCode == got.ExitCode, $"exit code: baseline {want.ExitCode}, now {got.ExitCode}\nstderr now: {got.Stderr}");
        string wantOut = c.Timings ? WithoutTimings(want.Stdout) : want.Stdout;
        string gotOut = c.Timings ? WithoutTimings(got.Stdout) : got.Stdout;
        if (c.ProcNames)
        {
            string asBaseline = WithCommsForNames(gotOut);
            Assert.True(asBaseline != gotOut, $"vmstate {c.Args} shows no task by its /proc name (no workqueue suffix, no \"name\" field):\n{got.Stdout}");
            gotOut = asBaseline;
        }

        foreach (string added in c.AddedCommands ?? [])
        {
            // A new command is an intended addition to the help's command list; nothing else may change.
            gotOut = WithoutCommandLine(gotOut, added, $"vmstate {c.Args} does not list the new command {added} once:\n{got.Stdout}");
        }

        foreach (string changed in c.ChangedUsage ?? [])
        {
            wantOut = WithoutCommandLine(wantOut, changed, $"the help does not list {changed} once:\n{want.Stdout}");
            gotOut = WithoutCommandLine(gotOut, changed, $"the help does not list {changed} once:\n{got.Stdout}");
        }

        if (c.CoreLayout)
        {
            // The size follows the layout; it must still be the size of the file written.
            Match size = s_coreBytes.Match(gotOut);
            Assert.True(!size.Success || long.Parse(size.Groups[1].Value, CultureInfo.InvariantCulture) == new FileInfo(Path.Combine(guest.OutputDir, "core.elf")).Length, $"coreBytes is not the size of core.elf:\n{got.Stdout}");
            wantOut = s_coreBytes.Replace(wantOut, "\"coreBytes\": <bytes>");
            gotOut = s_coreBytes.Replace(gotOut, "\"coreBytes\": <bytes>");
        }

        // A timing pattern that no longer matches would leave the time in and make the case fail at random.
        Assert.True(!c.Timings || wantOut.Contains("<time>", StringComparison.Ordinal), $"no timing pattern matched the baseline's output of {c.Args}:\n{want.Stdout}");
        AssertSameText("stdout", wantOut, gotOut);
        AssertSameText("stderr", want.Stderr, got.Stderr);
        Assert.True((got.ExitCode == 0) == (c.Exit == Exit.Success), $"vmstate {c.Args} exited {got.ExitCode} in both CLIs, expected {c.Exit}:\n{got.Stderr}");
        if (c.KernelVirtualPaddr)
        {
            WithKernelVirtualPaddr(Path.Combine(baselineOut, "core.elf"));
        }

        foreach (string file in c.Files ?? [])
        {
            if (c.CoreLayout && file == "core.elf")
            {
                AssertSameCore(Path.Combine(baselineOut, file), Path.Combine(guest.OutputDir, file));
            }
            else
            {
                AssertSameFile(Path.Combine(baselineOut, file), Path.Combine(guest.OutputDir, file));
            }
        }

        // Extract and edit write up to a RAM's worth each; freed now rather than at the end of the class.
        ResetDirectory(baselineOut);
        ResetDirectory(guest.OutputDir);
    }

    [Theory]
    [InlineData("info {mig}")]
    [InlineData("ps {mig}")]
    [InlineData("snapshots {qcow2}")]
    public void RedirectedOutputHasNoEscapeSequencesWhateverTermSays(string command)
    {
        (int code, string stdout, string stderr) = VmStateCli.Run(Expand(command), new Dictionary<string, string>(StringComparer.Ordinal) { ["TERM"] = "xterm-256color" });
        Assert.True(code == 0, stderr);
        Assert.True(stdout.Length > 0 && !stdout.Contains('\x1b', StringComparison.Ordinal), $"vmstate {command} wrote escape sequences into redirected output:\n{stdout}");
    }

    private string[] Expand(string template)
    {
        GroundTruth.MarkerInfo marker = guest.Truth.Marker ?? throw new InvalidOperationException("the guest printed no marker line");
        string banner = guest.Truth.Lines.Where(l => l.Key == "ksym" && l.Text.StartsWith("name=linux_banner ", StringComparison.Ordinal))
            .Select(l => l.Text.Split(' ')[1]["addr=".Length..]).Single();
        var values = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["{mig}"] = guest.StreamPath,
            ["{elf}"] = guest.DumpPath,
            ["{qcow2}"] = guest.DiskPath,
            ["{truncated}"] = guest.TruncatedPath,
            ["{missing}"] = Path.Combine(guest.Dir, "no-such-snapshot.mig"),
            ["{out}"] = guest.OutputDir,
            ["{pid}"] = marker.Pid.ToString(CultureInfo.InvariantCulture),
            ["{maddr}"] = $"0x{marker.VirtualAddress:x}",
            ["{mpaddr}"] = $"0x{marker.PhysicalAddress:x}",
            ["{banner}"] = banner,
        };
        // "struct list_head" is one argument; no other case has a space inside an argument.
        string[] words = template.Replace("struct list_head", "struct\u0001list_head", StringComparison.Ordinal).Split(' ');
        return words.Select(w => values.Aggregate(w, (s, kv) => s.Replace(kv.Key, kv.Value, StringComparison.Ordinal)).Replace('\u0001', ' ')).ToArray();
    }

    /// <summary>
    /// The ps/pstree output as the baseline (comm only) wrote it: each renamed task's ps cells ("name" padded to the
    /// COMM column, then "[name]" as its COMMAND) and pstree node ("name(pid)") back to comm, and the JSON "name"
    /// field removed. Only tasks whose name differs from their comm are touched.
    /// </summary>
    private string WithCommsForNames(string text)
    {
        text = s_nameField.Replace(text, string.Empty);
        foreach ((int pid, string name, string comm) in _renamed.Value)
        {
            string p = pid.ToString(CultureInfo.InvariantCulture);
            text = text.Replace($"{name,-16} [{name}]", $"{comm,-16} [{comm}]", StringComparison.Ordinal)
                .Replace($"{name}({p})", $"{comm}({p})", StringComparison.Ordinal);
        }

        return text;
    }

    /// <summary><paramref name="text"/> without the help's one line for <paramref name="command"/>, which must be there once (else <paramref name="failure"/>).</summary>
    private static string WithoutCommandLine(string text, string command, string failure)
    {
        string[] lines = text.Split('\n');
        string[] kept = [.. lines.Where(l => !l.StartsWith($"  {command} ", StringComparison.Ordinal))];
        Assert.True(kept.Length == lines.Length - 1, failure);
        return string.Join('\n', kept);
    }

    private static string WithoutTimings(string text) => s_timings.Aggregate(text, (s, t) => t.Pattern.Replace(s, t.Replacement));

    private static void ResetDirectory(string path)
    {
        if (Directory.Exists(path))
        {
            Directory.Delete(path, recursive: true);
        }

        Directory.CreateDirectory(path);
    }

    /// <summary>Fails with the first line that differs, both versions of it, and the line counts.</summary>
    private static void AssertSameText(string what, string want, string got)
    {
        if (want == got)
        {
            return;
        }

        string[] a = want.Split('\n');
        string[] b = got.Split('\n');
        int i = 0;
        while (i < a.Length && i < b.Length && a[i] == b[i])
        {
            i++;
        }

        throw new Xunit.Sdk.XunitException(
            $"{what} differs from the baseline's at line {i + 1} ({a.Length} lines in the baseline, {b.Length} now):\n"
            + $"baseline: {(i < a.Length ? a[i] : "<end>")}\nnow:      {(i < b.Length ? b[i] : "<end>")}");
    }

    /// <summary>
    /// The one intended difference of extract's core.elf from the baseline's (issue 11, so that Volatility 3 reads the
    /// default core): a kernel-virtual PT_LOAD (p_vaddr above any physical address) now carries p_paddr = p_vaddr
    /// where the baseline carried the physical address it aliases. This sets that field of those program headers in
    /// the baseline's file the new way; every other byte, the other headers' fields and these headers' other fields
    /// included, is still compared as it is. A baseline that already has the new layout fails here: remove the rule.
    /// </summary>
    private static void WithKernelVirtualPaddr(string core)
    {
        const ulong maxPhysical = (1UL << 52) - 1;
        using FileStream f = new(core, FileMode.Open, FileAccess.ReadWrite);
        byte[] header = new byte[64];
        f.ReadExactly(header);
        long phoff = (long)BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(32));
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(54));
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(56));
        Assert.True(phentsize == 56 && phnum != 0xFFFF, $"{core}: unexpected program header table ({phnum} x {phentsize})");
        byte[] table = new byte[phnum * phentsize];
        f.Position = phoff;
        f.ReadExactly(table);
        int rewritten = 0;
        for (int i = 0; i < phnum; i++)
        {
            Span<byte> p = table.AsSpan(i * phentsize, phentsize);
            ulong vaddr = BinaryPrimitives.ReadUInt64LittleEndian(p[16..]);
            ulong paddr = BinaryPrimitives.ReadUInt64LittleEndian(p[24..]);
            if (BinaryPrimitives.ReadUInt32LittleEndian(p) == 1 && vaddr > maxPhysical && paddr <= maxPhysical)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(p[24..], vaddr);
                rewritten++;
            }
        }

        Assert.True(rewritten > 0, $"{core}: the baseline's core has no kernel-virtual PT_LOAD with a physical p_paddr; it has the new layout already, so KernelVirtualPaddr should go");
        f.Position = phoff;
        f.Write(table);
    }

    /// <summary>
    /// The one intended difference of extract's core.elf from the baseline's (issue 11, extract in one read of the
    /// stream): a migration stream's RAM is written into the core while the stream is parsed, so the segments' bytes
    /// sit at other file offsets (after room left for the headers, in RAM block order) and the file has another size.
    /// Everything a reader sees must be equal: the ELF header and the program headers but for each PT_LOAD's
    /// p_offset, the notes, every physical PT_LOAD's file bytes, and for each kernel-virtual PT_LOAD the guest-physical
    /// address its bytes are (the physical segment and the offset in it that its p_offset points into).
    /// </summary>
    private static void AssertSameCore(string want, string got)
    {
        using FileStream a = File.OpenRead(want);
        using FileStream b = File.OpenRead(got);
        byte[] ha = new byte[64];
        byte[] hb = new byte[64];
        a.ReadExactly(ha);
        b.ReadExactly(hb);
        Assert.True(ha.AsSpan().SequenceEqual(hb), "core.elf: the ELF header differs from the baseline's");
        long phoff = (long)BinaryPrimitives.ReadUInt64LittleEndian(ha.AsSpan(32));
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(ha.AsSpan(56));
        Assert.True(phnum != 0xFFFF, "core.elf: PN_XNUM cores are not compared here");
        byte[] ta = new byte[phnum * 56];
        byte[] tb = new byte[phnum * 56];
        a.Position = b.Position = phoff;
        a.ReadExactly(ta);
        b.ReadExactly(tb);
        var physicalA = new List<(long Offset, ulong Size, ulong Paddr)>();
        var physicalB = new List<(long Offset, ulong Size, ulong Paddr)>();
        for (int i = 0; i < phnum; i++)
        {
            Span<byte> pa = ta.AsSpan(i * 56, 56);
            Span<byte> pb = tb.AsSpan(i * 56, 56);
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(pa);
            long offA = (long)BinaryPrimitives.ReadUInt64LittleEndian(pa[8..]);
            long offB = (long)BinaryPrimitives.ReadUInt64LittleEndian(pb[8..]);
            ulong vaddr = BinaryPrimitives.ReadUInt64LittleEndian(pa[16..]);
            ulong size = BinaryPrimitives.ReadUInt64LittleEndian(pa[32..]);
            Assert.True(pa[..8].SequenceEqual(pb[..8]) && pa[16..].SequenceEqual(pb[16..]) && (type != 4 || offA == offB), $"core.elf: program header {i} differs from the baseline's (other than a PT_LOAD's p_offset)");
            if (type == 4)
            {
                AssertSameBytes(a, offA, b, offB, (long)size, $"the notes (program header {i})");
            }
            else if (type == 1 && vaddr <= (1UL << 52) - 1)
            {
                AssertSameBytes(a, offA, b, offB, (long)size, $"PT_LOAD {i} (p_paddr 0x{vaddr:x})");
                physicalA.Add((offA, size, vaddr));
                physicalB.Add((offB, size, vaddr));
            }
        }

        for (int i = 0; i < phnum; i++)
        {
            ulong vaddr = BinaryPrimitives.ReadUInt64LittleEndian(ta.AsSpan((i * 56) + 16));
            if (BinaryPrimitives.ReadUInt32LittleEndian(ta.AsSpan(i * 56)) == 1 && vaddr > (1UL << 52) - 1)
            {
                ulong? atA = PhysicalAt(physicalA, (long)BinaryPrimitives.ReadUInt64LittleEndian(ta.AsSpan((i * 56) + 8)));
                ulong? atB = PhysicalAt(physicalB, (long)BinaryPrimitives.ReadUInt64LittleEndian(tb.AsSpan((i * 56) + 8)));
                Assert.True(atA is not null && atA == atB, $"core.elf: kernel-virtual PT_LOAD {i} (p_vaddr 0x{vaddr:x}) shows guest-physical 0x{atB:x} where the baseline's shows 0x{atA:x}");
            }
        }
    }

    private static ulong? PhysicalAt(List<(long Offset, ulong Size, ulong Paddr)> physical, long offset)
    {
        foreach ((long o, ulong size, ulong paddr) in physical)
        {
            if (offset >= o && (ulong)(offset - o) < size)
            {
                return paddr + (ulong)(offset - o);
            }
        }

        return null;
    }

    private static void AssertSameBytes(FileStream a, long offA, FileStream b, long offB, long length, string what)
    {
        byte[] x = new byte[1 << 20];
        byte[] y = new byte[1 << 20];
        for (long done = 0; done < length;)
        {
            int n = (int)Math.Min(x.Length, length - done);
            a.Position = offA + done;
            b.Position = offB + done;
            a.ReadExactly(x, 0, n);
            b.ReadExactly(y, 0, n);
            int diff = x.AsSpan(0, n).CommonPrefixLength(y.AsSpan(0, n));
            Assert.True(diff == n, $"core.elf: {what} differs from the baseline's at byte 0x{done + diff:x} of it");
            done += n;
        }
    }

    /// <summary>Fails with the first offset at which the files differ (compared in chunks: cores are RAM-sized).</summary>
    private static void AssertSameFile(string want, string got)
    {
        Assert.True(File.Exists(want), $"the baseline wrote no {want}");
        Assert.True(File.Exists(got), $"the current CLI wrote no {got}");
        using FileStream a = File.OpenRead(want);
        using FileStream b = File.OpenRead(got);
        Assert.True(a.Length == b.Length, $"{Path.GetFileName(got)}: {a.Length} bytes from the baseline, {b.Length} now");
        byte[] x = new byte[1 << 20];
        byte[] y = new byte[1 << 20];
        long offset = 0;
        while (true)
        {
            int n = a.ReadAtLeast(x, x.Length, throwOnEndOfStream: false);
            b.ReadExactly(y, 0, n);
            int diff = x.AsSpan(0, n).CommonPrefixLength(y.AsSpan(0, n));
            Assert.True(diff == n, $"{Path.GetFileName(got)} differs from the baseline's at offset 0x{offset + diff:x}");
            if (n < x.Length)
            {
                return;
            }

            offset += n;
        }
    }
}
