using VmState.Formats;
using VmState.Formats.Migration;
using VmState.IO;

namespace VmState.Tests.Snapshots;

/// <summary>
/// The indexcache fuzz target's main seed (fuzz/corpus/indexcache/gdb-target.idx) is the real RAM index record of
/// the stream the target replays it over (fuzz/VmState.Fuzz/gdb-target.mig), so AFL starts from a record that
/// decodes and replays. The seed is made here; <c>VMSTATE_WRITE_FUZZ_SEEDS=1</c> rewrites it.
/// </summary>
public sealed class IndexCacheFuzzSeedTests
{
    private static string RepoPath(params string[] parts)
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "VmState.slnx")))
        {
            dir = Path.GetDirectoryName(dir);
        }

        Assert.NotNull(dir);
        return Path.Combine([dir, .. parts]);
    }

    [Fact]
    public void TheCommittedSeedIsTheRecordOfTheTargetsStreamAndReplays()
    {
        byte[] stream = File.ReadAllBytes(RepoPath("fuzz", "VmState.Fuzz", "gdb-target.mig"));
        using MigrationStream fresh = MigrationStreamReader.Read(new MemorySource(stream));
        byte[] seed = new RamIndexRecord(fresh.PageSize, fresh.RamBlocks, fresh.RamChunks).Encode();
        string path = RepoPath("fuzz", "corpus", "indexcache", "gdb-target.idx");
        if (Environment.GetEnvironmentVariable("VMSTATE_WRITE_FUZZ_SEEDS") == "1")
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllBytes(path, seed);
        }

        Assert.Equal(seed, File.ReadAllBytes(path));
        RamIndexRecord record = RamIndexRecord.Decode(seed, stream.Length, ReaderLimits.Default);
        using MigrationStream replayed = MigrationStreamReader.Read(new MemorySource(stream), ReaderLimits.Default, null, ownsSource: false, ram: null, record);
        Assert.True(replayed.RamIndexFromCache);
        Assert.True(fresh.RamBlocks.Sum(b => b.DataPages) > 0);
        Assert.Equal(fresh.RamBlocks.Select(b => (b.Name, b.DataPages, b.ZeroPages)), replayed.RamBlocks.Select(b => (b.Name, b.DataPages, b.ZeroPages)));
    }
}
