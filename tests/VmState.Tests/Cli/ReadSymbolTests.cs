using System.Globalization;
using VmState.Formats.Elf;
using VmState.Tests.Linux;

namespace VmState.Tests.Cli;

/// <summary>
/// <c>read --sym</c> resolves through the library's symbol expressions with the messages it always had, and
/// <c>read</c> and <c>translate</c> honour <c>--system-map</c> and <c>--btf</c>.
/// </summary>
[Collection(nameof(ConsoleCollection))]
public sealed class ReadSymbolTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-cli-sym-").FullName;
    private readonly SyntheticLinux _linux = new();
    private readonly string _core;

    public ReadSymbolTests()
    {
        _core = Path.Combine(_dir, "linux.core");
        ElfCoreWriter.Write(_linux.Machine, _core, _linux.Machine.VmcoreinfoNote);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int Code, string Stdout, string Stderr) Run(params string[] args) => CliRunner.Run(args);

    [Theory]
    [InlineData("init_task", 0UL)]
    [InlineData("init_task+0x10", 0x10UL)]
    [InlineData("init_task+32", 32UL)]
    public void ASymbolWithAnOffsetIsReadAtItsAddress(string expression, ulong offset)
    {
        (int code, string stdout, string stderr) = Run("read", _core, "--sym", expression, "16");
        Assert.True(code == 0, stderr);
        Assert.StartsWith((_linux.InitTask + offset).ToString("x16", CultureInfo.InvariantCulture) + "  ", stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("no_such_symbol+0x10", "vmstate: kallsyms has no symbol 'no_such_symbol' (try vmstate symbols SNAPSHOT 'no_such_symbol*')\n")]
    [InlineData("init_task+0xten", "vmstate: symbol offset \"0xten\" is not a number (use 0x-prefixed hex or decimal)\n")]
    [InlineData("init_task+ten", "vmstate: symbol offset \"ten\": unknown suffix 'n' (use k, m or g)\n")]
    public void BadSymbolsAreOneLineArgumentErrors(string expression, string message)
    {
        (int code, string stdout, string stderr) = Run("read", _core, "--sym", expression, "16");
        Assert.Equal(2, code);
        Assert.Empty(stdout);
        Assert.Equal(message, stderr);
    }

    [Fact]
    public void ReadSymTakesTheSymbolsFromTheSystemMapGiven()
    {
        // (The hex dump's text column: raw output goes to the process's stdout, past Console.Out.)
        (int code, string stdout, string stderr) = Run("read", _core, "--sym", "linux_banner", "14");
        Assert.True(code == 0, stderr);
        Assert.EndsWith("|Linux version |\n", stdout, StringComparison.Ordinal);

        // The build's System.map: _text unrandomised, and a name kallsyms does not have, at "version" in the banner.
        const ulong LinkText = 0xffffffff81000000UL;
        ulong banner;
        using (Vm vm = Vm.Open(_core))
        {
            banner = vm.Linux.Symbol("linux_banner");
        }

        ulong linkBanner = banner - _linux.Text + LinkText;
        string map = Path.Combine(_dir, "System.map");
        File.WriteAllText(map, string.Create(CultureInfo.InvariantCulture, $"{LinkText:x16} T _text\n{linkBanner:x16} D linux_banner\n{linkBanner + 6:x16} D banner_version\n"));
        (code, _, stderr) = Run("read", _core, "--sym", "banner_version", "7");
        Assert.Equal(2, code);
        Assert.Contains("no symbol 'banner_version'", stderr, StringComparison.Ordinal);
        (code, stdout, stderr) = Run("read", _core, "--sym", "banner_version", "7", "--system-map", map);
        Assert.True(code == 0, stderr);
        Assert.StartsWith((banner + 6).ToString("x16", CultureInfo.InvariantCulture), stdout, StringComparison.Ordinal);
        Assert.EndsWith("|version|\n", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void TranslatePidTakesTheTypesFromTheBtfGiven()
    {
        string missing = Path.Combine(_dir, "no-such-vmlinux");
        (int code, _, string stderr) = Run("translate", _core, "0x1000", "--pid", "1", "--btf", missing);
        Assert.Equal(2, code);
        Assert.Contains(missing, stderr, StringComparison.Ordinal);

        // Without --pid the kernel is not needed, so neither is the file.
        (code, _, stderr) = Run("translate", _core, "0x1000", "--btf", missing);
        Assert.NotEqual(2, code);
        Assert.DoesNotContain(missing, stderr, StringComparison.Ordinal);
    }
}
