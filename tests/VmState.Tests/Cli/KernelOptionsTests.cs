using VmState.Formats.Elf;
using VmState.Tests.Linux;

namespace VmState.Tests.Cli;

/// <summary>
/// Every command that locates the guest kernel takes the kernel options from one place and honours them: a
/// --system-map or --btf the command ignored would not be opened, so naming a file that does not exist must fail
/// every one of them, naming the file; and the location sources (--no-vmcoreinfo, --no-cpu) reach the locator.
/// </summary>
[Collection(nameof(ConsoleCollection))]
public sealed class KernelOptionsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-cli-kopt-").FullName;
    private readonly SyntheticLinux _linux = new();
    private readonly string _core;

    public KernelOptionsTests()
    {
        _core = Path.Combine(_dir, "linux.core");
        ElfCoreWriter.Write(_linux.Machine, _core, _linux.Machine.VmcoreinfoNote);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>The commands that read the kernel, with {core} and {out} for the snapshot and an output path.</summary>
    public static TheoryData<string> KernelCommands() => new()
    {
        "kernel-info {core}",
        "ps {core}",
        "pstree {core}",
        "modules {core}",
        "netdev {core}",
        "symbols {core} init_*",
        "symbols {core} --address 0x1000",
        "types {core} list_head",
        "dmesg {core}",
        "maps {core} 1",
        "procdump {core} 1 -o {out}",
        "read {core} --sym linux_banner 16",
        "read {core} 0x7ffd0010 16 --va --pid 1",
        "translate {core} 0x7ffd0010 --pid 1",
    };

    [Theory]
    [MemberData(nameof(KernelCommands))]
    public void AMissingSystemMapFailsEveryKernelCommand(string command)
    {
        string missing = Path.Combine(_dir, "no-such-System.map");
        (int code, string stdout, string stderr) = CliRunner.Run([.. Args(command), "--system-map", missing]);
        Assert.True(code == 2, $"exit {code}: {stderr}");
        Assert.Contains(missing, stderr, StringComparison.Ordinal);
        Assert.Empty(stdout);
    }

    [Theory]
    [InlineData("types {core} list_head")]
    [InlineData("ps {core}")]
    [InlineData("translate {core} 0x7ffd0010 --pid 1")]
    [InlineData("read {core} 0x7ffd0010 16 --pid 1")]
    public void AMissingBtfFailsTheCommandsThatReadTypes(string command)
    {
        string missing = Path.Combine(_dir, "no-such-vmlinux");
        (int code, _, string stderr) = CliRunner.Run([.. Args(command), "--btf", missing]);
        Assert.True(code == 2, $"exit {code}: {stderr}");
        Assert.Contains(missing, stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void TheLocationSourcesReachTheLocator()
    {
        (int code, string stdout, string stderr) = CliRunner.Run("kernel-info", _core);
        Assert.True(code == 0, stderr);
        Assert.Contains("found via         VMCOREINFO", stdout, StringComparison.Ordinal);

        (code, stdout, stderr) = CliRunner.Run("kernel-info", _core, "--no-vmcoreinfo");
        Assert.True(code == 0, stderr);
        Assert.Contains("found via         vCPU CR3", stdout, StringComparison.Ordinal);

        (code, stdout, stderr) = CliRunner.Run("kernel-info", _core, "--no-vmcoreinfo", "--no-cpu");
        Assert.True(code == 0, stderr);
        Assert.Contains("found via         banner + kallsyms", stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("read {core} --sym linux_banner 14")]
    [InlineData("read {core} 0x7ffd0010 16 --pid 1")]
    [InlineData("translate {core} 0x7ffd0010 --pid 1")]
    public void ReadAndTranslateTakeTheLocationSourcesToo(string command)
    {
        // The same result whichever way the kernel is found: the options are accepted and passed on.
        (int code, string want, string stderr) = CliRunner.Run(Args(command));
        Assert.True(code == 0, stderr);
        (code, string got, stderr) = CliRunner.Run([.. Args(command), "--no-vmcoreinfo", "--no-cpu"]);
        Assert.True(code == 0, stderr);
        Assert.Equal(want, got);
    }

    private string[] Args(string command) =>
        [.. command.Split(' ').Select(w => w.Replace("{core}", _core, StringComparison.Ordinal).Replace("{out}", Path.Combine(_dir, "p.core"), StringComparison.Ordinal))];
}
