using VmState.Live;

namespace VmState.Tests.Replay;

public sealed class QemuArgumentsTests
{
    [Fact]
    public void OptionsAreReadWithTheirValuesFlagsAloneAndBareWordsAsDisks()
    {
        QemuArguments a = QemuArguments.Parse(["qemu-system-x86_64", "-m", "512", "-no-reboot", "--netdev", "user,id=n0", "disk.img", "-S"]);
        Assert.Equal("qemu-system-x86_64", a.Program);
        Assert.Equal([new QemuArgument("m", "512"), new QemuArgument("no-reboot", null), new QemuArgument("netdev", "user,id=n0"), new QemuArgument("hda", "disk.img"), new QemuArgument("S", null)], a.Options);
        Assert.Equal(["qemu-system-x86_64", "-m", "512", "-no-reboot", "-netdev", "user,id=n0", "-hda", "disk.img", "-S"], a.ToArgv());
    }

    [Fact]
    public void AnOptionWithoutItsValueAndAnEmptyLineAreRefused()
    {
        Assert.Throws<ArgumentException>(() => QemuArguments.Parse(["qemu", "-m"]));
        Assert.Throws<ArgumentException>(() => QemuArguments.Parse([]));
    }

    [Theory]
    [InlineData("user,id=n0,restrict=on", "type", "user|id=n0|restrict=on")]
    [InlineData("file=a,,b.img,if=none", null, "file=a,b.img|if=none")]
    [InlineData("file=x,snapshot", null, "file=x|snapshot=on")]
    [InlineData("2", "cpus", "2")]
    [InlineData("", null, "")]
    public void KeyValueListsKeepOrderCommasAndImpliedKeys(string value, string? implied, string expected)
    {
        QemuOptionList l = QemuOptionList.Parse(value, implied);
        string shown = string.Join('|', l.Items.Select(kv => implied is not null && kv.Key == implied ? kv.Value : $"{kv.Key}={kv.Value}"));
        Assert.Equal(expected, shown);
        Assert.Equal(l.Items, QemuOptionList.Parse(l.ToString(implied), implied).Items);
    }

    [Fact]
    public void WithReplacesTheFirstOccurrenceAndDropsLaterOnes()
    {
        QemuOptionList l = QemuOptionList.Parse("a=1,b=2,a=3").With("a", "x,y");
        Assert.Equal("a=x,,y,b=2", l.ToString());
        Assert.Equal("b=2", l.Without("a").ToString());
    }
}
