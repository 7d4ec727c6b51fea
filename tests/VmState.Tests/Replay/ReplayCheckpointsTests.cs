using System.Text.Json;
using VmState.IO;
using VmState.Replay;

namespace VmState.Tests.Replay;

public sealed class ReplayCheckpointsTests
{
    [Fact]
    public void TheCheckpointsAreTheImagesRrCkSnapshotsWithTheirInstructionCountsInOrder()
    {
        // The shape of QEMU 7.2's qemu-img info --output=json: snapshots with the icount QEMU tied them to (since 5.2);
        // gdb's start_debugging and a snapshot whose name does not match its count are not checkpoints.
        const string json = """
            {
              "virtual-size": 1073741824, "filename": "snapshots.qcow2", "format": "qcow2",
              "snapshots": [
                {"id": "1", "name": "rr-ck-0", "icount": 0, "vm-state-size": 1000},
                {"id": "3", "name": "rr-ck-900", "icount": 900},
                {"id": "2", "name": "rr-ck-300", "icount": 300},
                {"id": "4", "name": "start_debugging", "icount": 950},
                {"id": "5", "name": "rr-ck-7", "icount": 8},
                {"id": "6", "name": "rr-ck-1000"}
              ]
            }
            """;
        using JsonDocument doc = JsonDocument.Parse(json);
        Assert.Equal([0UL, 300UL, 900UL], ReplayCheckpoints.Parse(doc.RootElement));
        Assert.Equal("rr-ck-900", ReplayCheckpoints.NameOf(900));
    }

    [Fact]
    public void AnImageWithoutSnapshotsHasNoCheckpoints()
    {
        // qemu-img leaves "snapshots" out when the image has none.
        Assert.Empty(ReplayCheckpoints.ParseInfo("""{"virtual-size": 1073741824, "format": "qcow2"}"""u8, "s.qcow2"));
    }

    [Theory]
    [InlineData("[]", "the top level is Array, not an object")]
    [InlineData("{\"snapshots\": {}}", "\"snapshots\" is Object, not an array")]
    [InlineData("{\"snapshots\": [1]}", "snapshots[0] is Number, not an object")]
    [InlineData("{\"snapshots\": [{\"name\": \"rr-ck-0\", \"icount\": 0}, {\"id\": \"2\"}]}", "snapshots[1] has no string \"name\"")]
    [InlineData("{\"snapshots\": [{\"name\": 1, \"icount\": 1}]}", "snapshots[0] has no string \"name\"")]
    [InlineData("{\"snapshots\": [{\"name\": \"rr-ck-1\", \"icount\": -1}]}", "snapshots[0].icount is -1, not an instruction count")]
    [InlineData("{\"snapshots\": [{\"name\": \"rr-ck-2\", \"icount\": 2.5}]}", "snapshots[0].icount is 2.5, not an instruction count")]
    [InlineData("{\"snapshots\": [{\"name\": \"x\", \"icount\": \"x\"}]}", "snapshots[0].icount is \"x\", not an instruction count")]
    [InlineData("{\"snapshots\": [", "not JSON (line 1)")]
    [InlineData("", "not JSON (line 1)")]
    public void OtherShapesAreAFormatErrorNamingTheMember(string json, string problem)
    {
        VmStateFormatException e = Assert.Throws<VmStateFormatException>(() => ReplayCheckpoints.ParseInfo(System.Text.Encoding.UTF8.GetBytes(json), "s.qcow2"));
        Assert.Contains(problem, e.Message, StringComparison.Ordinal);
        Assert.StartsWith("qemu-img info of s.qcow2 at offset", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MoreSnapshotsThanAnIndexMakesAreRefused()
    {
        string json = "{\"snapshots\": [" + string.Join(',', Enumerable.Repeat("{\"name\": \"a\"}", ReplayCheckpoints.MaxSnapshots + 1)) + "]}";
        VmStateFormatException e = Assert.Throws<VmStateFormatException>(() => ReplayCheckpoints.ParseInfo(System.Text.Encoding.UTF8.GetBytes(json), "s.qcow2"));
        Assert.Contains("more than the 65537 an index makes", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheRealQemuImgOutputOfTheFuzzSeedsParses()
    {
        // fuzz/corpus/rrcheckpoints: qemu-img 7.2 on real checkpoint images of rr index.
        string dir = Path.Combine(RepoRoot(), "fuzz", "corpus", "rrcheckpoints");
        IReadOnlyList<ulong> every = ReplayCheckpoints.ParseInfo(File.ReadAllBytes(Path.Combine(dir, "every-point.json")), "every-point.json");
        Assert.True(every.Count >= 2);
        Assert.Equal(0UL, every[0]);
        Assert.Equal(every.Order(), every);
        // The default (adaptive) index of the same kind of recording: 20 points, irregularly spaced checkpoints.
        IReadOnlyList<ulong> adaptive = ReplayCheckpoints.ParseInfo(File.ReadAllBytes(Path.Combine(dir, "adaptive.json")), "adaptive.json");
        Assert.Equal(17, adaptive.Count);
        Assert.Equal(0UL, adaptive[0]);
        Assert.True(adaptive.Zip(adaptive.Skip(1), (a, b) => b - a).Distinct().Count() > 1);
    }

    private static string RepoRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "VmState.slnx")))
        {
            dir = Path.GetDirectoryName(dir);
        }

        Assert.NotNull(dir);
        return dir;
    }

    [Fact]
    public void TheCheckpointImagesAreTheFilesNamedAfterTheirCountsInOrder()
    {
        string[] names =
        [
            "rr-ck-900.qcow2", "rr-ck-0.qcow2", "rr-ck-300.qcow2", "drive0.qcow2", "snapshots.qcow2", "rr-ck-.qcow2",
            "rr-ck-007.qcow2", "rr-ck-12.qcow2.copied", "rr-ck-x1.qcow2", "rr-ck-+5.qcow2", "rr-ck-99999999999999999999.qcow2",
            "rr-ck-18446744073709551615.qcow2", "rr-ck-12\0\0.qcow2", "rr-ck-١٢.qcow2",
        ];
        Assert.Equal([0UL, 300UL, 900UL, ulong.MaxValue], ReplayCheckpoints.ParseImageNames(names, "/r/checkpoints"));
        Assert.Equal("rr-ck-900.qcow2", ReplayCheckpoints.ImageName(900));
        Assert.Equal([900UL], ReplayCheckpoints.ParseImageNames([ReplayCheckpoints.ImageName(900)], "/r/checkpoints"));
    }

    [Fact]
    public void MoreCheckpointImagesThanAnIndexMakesAreAFormatError()
    {
        IEnumerable<string> names = Enumerable.Range(0, ReplayCheckpoints.MaxSnapshots + 1).Select(i => ReplayCheckpoints.ImageName((ulong)i));
        VmStateFormatException e = Assert.Throws<VmStateFormatException>(() => ReplayCheckpoints.ParseImageNames(names, "/r/checkpoints"));
        Assert.Contains("/r/checkpoints", e.Message, StringComparison.Ordinal);
    }
}
