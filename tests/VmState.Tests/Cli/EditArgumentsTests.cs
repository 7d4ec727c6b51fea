using VmState.Cli.Commands;
using VmState.Tests.Support;

namespace VmState.Tests.Cli;

/// <summary>Runs alone: <see cref="Console.SetError"/> is process-wide.</summary>
[CollectionDefinition(nameof(ConsoleCollection), DisableParallelization = true)]
public sealed class ConsoleCollection;

/// <summary>
/// Arguments that overflowed into stack traces: they must be one-line errors with exit code 2, like every other
/// bad argument.
/// </summary>
[Collection(nameof(ConsoleCollection))]
public sealed class EditArgumentsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("18446744073709551615g")]
    [InlineData("17179869184g")] // 2^34 GiB = 2^64
    [InlineData("0x1_0000_0000_0000_0000")]
    [InlineData("99999999999999999999")]
    public void AddressesPast64BitsAreArgumentErrors(string text)
    {
        var e = Assert.Throws<ArgumentException>(() => AddressParser.Parse(text, "--write-pa address"));
        Assert.Contains("--write-pa address", e.Message);
    }

    [Theory]
    [InlineData("16g", 16UL << 30)]
    [InlineData("17179869183g", 17179869183UL << 30)] // the largest that fits
    [InlineData("0xffffffffffffffff", ulong.MaxValue)]
    public void SuffixesStillMultiply(string text, ulong expected) => Assert.Equal(expected, AddressParser.Parse(text, "x"));

    [Theory]
    [InlineData("99999999999:rax", "99999999999")]
    [InlineData("2:rax", "2")]
    [InlineData("-1:rax", "-1")]
    [InlineData("x:rax", "x")]
    public void VcpuIndicesOutsideTheSnapshotAreNamed(string lhs, string index)
    {
        var e = Assert.Throws<ArgumentException>(() => EditCommand.ParseRegisterTarget(lhs, lhs + "=1", 2));
        Assert.Contains($"no vCPU {index} in this snapshot", e.Message);
        Assert.Contains("0 to 1", e.Message);
    }

    [Fact]
    public void RegisterTargetDefaultsToVcpuZero()
    {
        Assert.Equal((0, "rax"), EditCommand.ParseRegisterTarget("rax", "rax=1", 2));
        Assert.Equal((1, "cr3"), EditCommand.ParseRegisterTarget("1:cr3", "1:cr3=1", 2));
    }

    [Theory]
    [InlineData("--write-pa", "18446744073709551615g=00", "larger than 2^64-1")]
    [InlineData("--write-pa", "18446744073709551615=0000", "past the top of the 64-bit address space")]
    [InlineData("--set-reg", "99999999999:rax=1", "no vCPU 99999999999 in this snapshot")]
    public void TheCommandExitsWithTwoAndOneLine(string option, string value, string expected)
    {
        var b = new StreamBuilder().Block("pc.ram", 1 << 20);
        b.Cpu(0, new ulong[16], rip: 0x1000, cr3: 0x2000);
        string input = Path.Combine(_dir, "in.mig");
        string output = Path.Combine(_dir, "out.mig");
        File.WriteAllBytes(input, b.Build());
        TextWriter saved = Console.Error;
        var error = new StringWriter();
        int code;
        try
        {
            Console.SetError(error);
            code = VmState.Cli.Program.Main(["edit", input, "-o", output, option, value]);
        }
        finally
        {
            Console.SetError(saved);
        }

        string text = error.ToString();
        Assert.Equal(2, code);
        Assert.Single(text.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("vmstate: ", text, StringComparison.Ordinal);
        Assert.Contains(expected, text);
        Assert.False(File.Exists(output));
    }
}
