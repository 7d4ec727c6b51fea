using VmState.IO;

namespace VmState.Tests.IO;

public sealed class SourceTests : IDisposable
{
    private readonly string _path = Path.GetTempFileName();

    public void Dispose() => File.Delete(_path);

    [Fact]
    public void MappedAndPositionalReadsAgreeIncludingShortReadsAtTheEnd()
    {
        byte[] data = new byte[100_000];
        new Random(7).NextBytes(data);
        File.WriteAllBytes(_path, data);
        using var mapped = new MappedFileSource(_path);
        using var plain = new FileSource(_path);
        foreach ((long offset, int length) in new[] { (0L, 10), (4095L, 3000), (99_990L, 64), (100_000L, 5), (123_456L, 1) })
        {
            byte[] a = new byte[length];
            byte[] b = new byte[length];
            int na = mapped.Read(offset, a);
            int nb = plain.Read(offset, b);
            Assert.Equal(nb, na);
            Assert.Equal(Math.Max(0, Math.Min(length, data.Length - offset)), na);
            Assert.Equal(b, a);
        }
    }

    [Fact]
    public void CursorReportsTruncationWithTheStructureName()
    {
        var c = new SourceCursor(new MemorySource(new byte[] { 0, 0, 0 }));
        var e = Assert.Throws<VmStateFormatException>(() => c.ReadBe32("widget header"));
        Assert.Equal(0, e.Offset);
        Assert.Contains("widget header", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void WindowSourceSeesOnlyItsWindow()
    {
        var w = new WindowSource(new MemorySource(Enumerable.Range(0, 100).Select(i => (byte)i).ToArray()), 10, 20, ownsInner: false);
        byte[] b = new byte[30];
        Assert.Equal(20, w.Read(0, b));
        Assert.Equal(10, b[0]);
        Assert.Equal(29, b[19]);
        Assert.Equal(0, w.Read(20, b));
    }
}
