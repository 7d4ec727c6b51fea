using VmState.Cli.Web;

namespace VmState.Tests.Web;

/// <summary>The request-parameter parsers of <c>vmstate serve</c>: what they take, and a 4xx naming the parameter for the rest.</summary>
public sealed class WebParametersTests
{
    [Theory]
    [InlineData("0x1000", 0x1000UL)]
    [InlineData("4096", 4096UL)]
    [InlineData("0xffff_ffff_8100_0000", 0xffff_ffff_8100_0000UL)]
    [InlineData("4k", 4096UL)]
    public void AddressesParseAsTheCliParsesThem(string text, ulong expected) => Assert.Equal(expected, WebParameters.Address(text, "addr"));

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("0x")]
    [InlineData("-1")]
    [InlineData("1e3")]
    [InlineData("18446744073709551616")]
    [InlineData("99999999999999999999g")]
    [InlineData("/etc/passwd")]
    [InlineData("0x00000000000000000000000000000000000000000000000000000000000000001")]
    public void BadAddressesAre400(string? text)
    {
        WebRequestException e = Assert.Throws<WebRequestException>(() => WebParameters.Address(text, "addr"));
        Assert.Equal(400, e.Status);
        Assert.Contains("addr", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("0x1000", 0x1000UL, 256)]
    [InlineData("0x1000+64", 0x1000UL, 64)]
    [InlineData("0x1000+4k", 0x1000UL, 4096)]
    [InlineData("0x1000-0x1010", 0x1000UL, 16)]
    public void RangesParse(string text, ulong address, int length) => Assert.Equal((address, length), WebParameters.Range(text, 256, 1 << 20));

    [Theory]
    [InlineData("0x1000+0")]
    [InlineData("0x1000+2m")]
    [InlineData("0x1010-0x1000")]
    [InlineData("0x1000-0x1000")]
    [InlineData("0-0x200000")]
    [InlineData("0xffffffffffffffff+2")]
    [InlineData("1+2-3")]
    [InlineData("+")]
    [InlineData("-")]
    public void BadRangesAre400(string text) => Assert.Equal(400, Assert.Throws<WebRequestException>(() => WebParameters.Range(text, 256, 1 << 20)).Status);

    [Theory]
    [InlineData("setup_new_exec")]
    [InlineData("_text")]
    [InlineData("do_exit.cold")]
    public void KernelSymbolNamesAreTaken(string text) => Assert.Equal(text, WebParameters.Symbol(text));

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("../etc/passwd")]
    [InlineData("0xffffffff81000000")]
    [InlineData("9abc")]
    [InlineData("sym+0x10")]
    [InlineData("a b")]
    [InlineData("<script>")]
    public void OtherSymbolsAre400(string? text) => Assert.Equal(400, Assert.Throws<WebRequestException>(() => WebParameters.Symbol(text)).Status);

    [Fact]
    public void SymbolsAreBounded()
    {
        Assert.Equal(128, WebParameters.Symbol(new string('a', 128)).Length);
        Assert.Equal(400, Assert.Throws<WebRequestException>(() => WebParameters.Symbol(new string('a', 129))).Status);
    }

    [Fact]
    public void LengthsAreBounded()
    {
        Assert.Equal(256, WebParameters.Length(null, 256, 1024));
        Assert.Equal(1024, WebParameters.Length("1k", 256, 1024));
        Assert.Throws<WebRequestException>(() => WebParameters.Length("1025", 256, 1024));
        Assert.Throws<WebRequestException>(() => WebParameters.Length("0", 256, 1024));
    }

    [Fact]
    public void PidsAndSourcesAreDecimalAndBounded()
    {
        Assert.Equal(4_194_304, WebParameters.Pid("4194304"));
        foreach (string bad in (string[])["", "-1", "+1", " 1", "1 ", "0x10", "4194305", "99999999999", "１"])
        {
            Assert.Equal(400, Assert.Throws<WebRequestException>(() => WebParameters.Pid(bad)).Status);
        }

        Assert.Equal(1, WebParameters.SourceIndex("1", 2));
        Assert.Equal(404, Assert.Throws<WebRequestException>(() => WebParameters.SourceIndex("2", 2)).Status);
        Assert.Equal(404, Assert.Throws<WebRequestException>(() => WebParameters.SourceIndex("..", 2)).Status);
    }

    [Fact]
    public void HexBytesAreBoundedPairs()
    {
        Assert.Equal(new byte[] { 0x90, 0xcc, 0x0f }, WebParameters.HexBytes("90 cc\n0F"));
        Assert.Equal(new byte[] { 0x12, 0x34 }, WebParameters.HexBytes("0x1234"));
        foreach (string bad in (string[])["", " ", "9", "9g", "0x", "zz", new string('a', 4 * WebParameters.MaxWriteLength + 2), new string('a', 2 * WebParameters.MaxWriteLength + 2)])
        {
            Assert.Equal(400, Assert.Throws<WebRequestException>(() => WebParameters.HexBytes(bad)).Status);
        }
    }

    [Fact]
    public void MessagesShowAtMost40CharactersWithControlCharactersEscaped() =>
        Assert.Equal("\"a\\x1bb" + new string('c', 37) + "…\"", WebParameters.Shown("a\u001bb" + new string('c', 100)));
}
