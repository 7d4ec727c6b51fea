using System.Text.Json;
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

    [Theory]
    [InlineData("[]")]
    [InlineData("{}")]
    [InlineData("{\"snapshots\": {}}")]
    [InlineData("{\"snapshots\": [1, \"x\", null, {\"name\": 1, \"icount\": \"x\"}, {\"name\": \"rr-ck-1\", \"icount\": -1}, {\"name\": \"rr-ck-2\", \"icount\": 2.5}]}")]
    public void AnythingElseGivesNoCheckpointsAndNoException(string json)
    {
        using JsonDocument doc = JsonDocument.Parse(json);
        Assert.Empty(ReplayCheckpoints.Parse(doc.RootElement));
    }
}
