using System.Text;
using VmState.Cli.Commands;
using VmState.Replay;

namespace VmState.Tests.Cli;

/// <summary>rr find's predicate options and rr goto's @FILE: bad values are one-line errors naming the option.</summary>
public sealed class RrArgumentsTests
{
    [Theory]
    [InlineData("7015403072", 7015403072UL)]
    [InlineData("0x1A2b", 0x1a2bUL)]
    [InlineData("18446744073709551615", ulong.MaxValue)]
    public void CountsAreDecimalOrHex(string text, ulong value) => Assert.Equal(value, RrArguments.ParseCount(text, "--before"));

    [Theory]
    [InlineData("")]
    [InlineData("-1")]
    [InlineData("18446744073709551616")]
    [InlineData("0x")]
    [InlineData("12k")]
    public void OtherCountsNameTheOption(string text) =>
        Assert.StartsWith("--before ", Assert.Throws<ArgumentException>(() => RrArguments.ParseCount(text, "--before")).Message, StringComparison.Ordinal);

    [Fact]
    public void ABytesPredicateTakesHexAndARange()
    {
        ReplayPredicate p = RrArguments.Predicate(null, "0x766d73", "0x1000..0x2000", null, null, 8, null, false);
        Assert.Equal("physical memory 0x1000..0x2000 contains 766d73", p.Description);
        Assert.Equal("kernel-virtual memory at 0xffffffff81000000 holds 00ff", RrArguments.Predicate(null, "00FF", null, "0xffffffff81000000", null, 8, null, false).Description);
    }

    [Theory]
    [InlineData("zz", "0x1000", "--bytes zz is not hex bytes")]
    [InlineData("abc", "0x1000", "--bytes abc is not hex bytes")]
    [InlineData("0x", "0x1000", "--bytes is empty")]
    [InlineData("00", "0x2000..0x1000", "--phys 0x2000..0x1000: the range's end is not after its start")]
    [InlineData("00", "0x1000..", "--phys end address \"\" is not a number")]
    [InlineData("00", "..", "--phys address \"\" is not a number")]
    public void BadBytesPredicatesNameTheOption(string bytes, string phys, string message) =>
        Assert.Contains(message, Assert.Throws<ArgumentException>(() => RrArguments.Predicate(null, bytes, phys, null, null, 8, null, false)).Message, StringComparison.Ordinal);

    [Fact]
    public void APatternIsAtMostAPage()
    {
        Assert.Equal(4096, RrArguments.HexBytes(new string('a', 8192)).Length);
        Assert.Contains("more than the 4096", Assert.Throws<ArgumentException>(() => RrArguments.HexBytes(new string('a', 8194))).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("256", 1, "--equals 256 does not fit in --size 1")]
    [InlineData("0x10", 3, "--size is 1, 2, 4 or 8")]
    [InlineData("x", 8, "--equals x is not an instruction count")]
    public void BadSymbolPredicatesNameTheOption(string equals, int size, string message) =>
        Assert.Contains(message, Assert.Throws<ArgumentException>(() => RrArguments.Predicate(null, null, null, null, "jiffies", size, equals, false)).Message, StringComparison.Ordinal);

    [Fact]
    public void AFindResultGivesItsCount()
    {
        Assert.Equal(6820869723UL, RrArguments.FindResultCount("""{"predicate": "process vmsmarker exists", "icount": 6820869723, "transitions": []}"""u8, "f.json"));
        Assert.Contains("has no \"icount\"", Assert.Throws<ArgumentException>(() => RrArguments.FindResultCount("""{"icount": null}"""u8, "f.json")).Message, StringComparison.Ordinal);
        Assert.Contains("has no \"icount\"", Assert.Throws<ArgumentException>(() => RrArguments.FindResultCount("""{"icount": -5}"""u8, "f.json")).Message, StringComparison.Ordinal);
        Assert.Contains("f.json is not a result of vmstate rr find --json: not JSON (line 1", Assert.Throws<ArgumentException>(() => RrArguments.FindResultCount(Encoding.UTF8.GetBytes("{\"icount\": 1"), "f.json")).Message, StringComparison.Ordinal);
    }
}
