using VmState.IO;

namespace VmState.Tests.IO;

public sealed class SourceTests : IDisposable
{
    private readonly string _path = Path.GetTempFileName();

    public void Dispose() => File.Delete(_path);

    [Fact]
    public void CachedAndPositionalReadsAgreeIncludingShortReadsAtTheEnd()
    {
        byte[] data = new byte[100_000];
        new Random(7).NextBytes(data);
        File.WriteAllBytes(_path, data);
        // A cache of two blocks, so reads also evict and reload.
        using var mapped = new CachedFileSource(_path, cacheBytes: 128 << 10);
        using var plain = new FileSource(_path);
        foreach ((long offset, int length) in new[] { (0L, 10), (4095L, 3000), (65_530L, 20), (99_990L, 64), (100_000L, 5), (123_456L, 1), (0L, 70_000), (7L, 100_000), (65_536L, 10) })
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

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AFileTruncatedWhileOpenIsAClearErrorNotACrash(bool cached)
    {
        // The regression: inputs were memory-mapped, and a snapshot truncated under `gdbserver` or `ps` killed the
        // process with SIGBUS. Reads now fail with InputChangedException naming the file, and the source goes on.
        byte[] data = new byte[300_000];
        new Random(3).NextBytes(data);
        File.WriteAllBytes(_path, data);
        using IRandomAccessSource source = cached ? new CachedFileSource(_path) : new FileSource(_path);
        byte[] b = new byte[100];
        Assert.Equal(100, source.Read(200_000, b));
        using (var f = new FileStream(_path, FileMode.Open, FileAccess.Write))
        {
            f.SetLength(150_000);
        }

        // Blocks read before the truncation may still be served from the cache; anything else is an error.
        var e = Assert.Throws<InputChangedException>(() => source.Read(280_000, b));
        Assert.Contains(_path, e.Message);
        Assert.Contains("truncated or rewritten", e.Message);
        Assert.Contains("150,000", e.Message);
        Assert.Throws<InputChangedException>(() => source.Read(149_990, new byte[70_000]));
        Assert.Equal(100, source.Read(1000, b));
        Assert.Equal(data.AsSpan(1000, 100).ToArray(), b);
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
