using System.Text.Json.Nodes;
using VmState.Editing;
using VmState.Export;
using VmState.Formats.Migration;
using VmState.IO;
using VmState.Linux;
using VmState.Live;
using VmState.Machine;
using VmState.Snapshots;
using VmState.Tests.Support;

namespace VmState.Tests;

/// <summary>
/// Every data error of the library is a <see cref="VmStateException"/>, so a caller can tell bad input from a bug
/// with one catch, and each names what it is about in properties instead of only in its message.
/// </summary>
public sealed class ErrorHierarchyTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-errors-").FullName;

    /// <inheritdoc />
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// The public exceptions that are deliberately not data errors, with the reason. A new exception type fails the
    /// test below until it derives from <see cref="VmStateException"/> or is added here with its reason.
    /// </summary>
    private static readonly Dictionary<Type, string> s_notDataErrors = new()
    {
        // The host's file changed under the reader: an I/O failure, caught with the other IOExceptions.
        [typeof(InputChangedException)] = "host I/O",

        // QEMU refused a command: the running QEMU's answer, not a problem with data VmState read.
        [typeof(QmpException)] = "QEMU's refusal",
    };

    [Fact]
    public void EveryPublicExceptionOfTheLibraryIsAVmStateExceptionOrListedAsNotADataError()
    {
        Type[] exceptions = typeof(VmStateException).Assembly.GetExportedTypes()
            .Where(t => typeof(Exception).IsAssignableFrom(t) && t != typeof(VmStateException))
            .ToArray();

        // The walk has to see the types it is about, or it would pass on an empty list.
        Assert.Contains(typeof(VmStateFormatException), exceptions);
        Assert.Contains(typeof(KernelDataException), exceptions);
        Assert.Contains(typeof(UnknownSymbolException), exceptions);
        foreach (Type t in exceptions)
        {
            Assert.True(typeof(VmStateException).IsAssignableFrom(t) || s_notDataErrors.ContainsKey(t),
                $"{t.FullName} is a public exception of VmState.Core but not a VmStateException; derive it from one, or list it as not a data error");
        }

        Assert.True(typeof(VmStateException).IsAbstract);
        Assert.True(typeof(VmStateNotFoundException).IsAssignableFrom(typeof(UnknownSymbolException)));
        foreach (Type t in new[] { typeof(VmStateFormatException), typeof(KernelDataException), typeof(VmStateNotFoundException), typeof(InvalidEditException), typeof(LiveVmGoneException) })
        {
            Assert.True(t.IsSubclassOf(typeof(VmStateException)), t.Name);

            // Not a FormatException/ArgumentException any more: callers that matched those would mistake data for bugs.
            Assert.False(typeof(FormatException).IsAssignableFrom(t), t.Name);
            Assert.False(typeof(ArgumentException).IsAssignableFrom(t), t.Name);
        }
    }

    [Fact]
    public void AFormatErrorKeepsItsOffsetAndStructure()
    {
        var e = new VmStateFormatException(0x1234, "qcow2 header", "bad magic");
        Assert.Equal((0x1234L, "qcow2 header", "bad magic"), (e.Offset, e.Structure, e.Problem));
        Assert.Equal("qcow2 header at offset 4660 (0x1234): bad magic", e.Message);
    }

    [Fact]
    public void AWriteOutsideRamIsRefusedWithItsAddressAndNothingIsWritten()
    {
        var b = new StreamBuilder().Block("pc.ram", 1 << 20).Page("pc.ram", 0, Enumerable.Repeat((byte)1, 4096).ToArray());
        b.Cpu(0, new ulong[16], rip: 0x1000, cr3: 0);
        string path = Path.Combine(_dir, "orig.mig");
        File.WriteAllBytes(path, b.Build());
        using MachineState m = SnapshotLoader.Open(path);
        var editor = new SnapshotEditor(m);

        InvalidEditException far = Assert.Throws<InvalidEditException>(() => editor.WritePhysical(0x4000_0000, [1]));
        Assert.Equal((0x4000_0000UL, "guest-physical"), (far.Address, far.Target));

        // Runs off the end of the 1 MiB of RAM: the first byte is RAM, the second is not, and neither is written.
        InvalidEditException straddle = Assert.Throws<InvalidEditException>(() => editor.WritePhysical(0xF_FFFF, [2, 3]));
        Assert.Equal(0x10_0000UL, straddle.Address);
        Assert.Equal(0, editor.Stream.EditedPages);

        Assert.Equal("cr9", Assert.Throws<InvalidEditException>(() => editor.SetRegister(0, "cr9", 1)).Target);
        VmStateNotFoundException cpu = Assert.Throws<VmStateNotFoundException>(() => editor.SetRegister(3, "rax", 1));
        Assert.Equal((VmStateObjectKind.Cpu, "3"), (cpu.Kind, cpu.Name));
        VmStateNotFoundException device = Assert.Throws<VmStateNotFoundException>(() => editor.SetDeviceField("no-such-nic", "mac", "1"));
        Assert.Equal((VmStateObjectKind.Device, "no-such-nic"), (device.Kind, device.Name));
    }

    [Fact]
    public void AHardwareFileThatCannotBeCarriedBackIsRefusedByType()
    {
        var b = new StreamBuilder().Block("pc.ram", 1 << 20);
        b.Cpu(0, new ulong[16], rip: 0x1000, cr3: 0);
        b.AddDevice(new StreamBuilder.Device("dev", 0, "dev", 1) { Fields = { StreamBuilder.Field.Int("reg", "uint32", 4, 5) } });
        string path = Path.Combine(_dir, "orig.mig");
        File.WriteAllBytes(path, b.Build());
        using MachineState m = SnapshotLoader.Open(path);
        JsonNode hardware;
        using (var json = new MemoryStream())
        {
            HardwareJsonWriter.Write(m, json);
            hardware = JsonNode.Parse(json.ToArray())!;
        }

        JsonNode dev = hardware["devices"]!.AsArray().Single(d => (string?)d!["id"] == "dev")!;
        string Write(string name)
        {
            string file = Path.Combine(_dir, name);
            File.WriteAllText(file, hardware.ToJsonString());
            return file;
        }

        // The file as extracted changes nothing: the refusals below come from the edits, not from the setup.
        Assert.Equal(0, SnapshotInjector.Apply(new SnapshotEditor(m), m, null, Write("same.json")).FieldsChanged);

        dev["fields"]!.AsArray().Single(f => (string?)f!["name"] == "reg")!["value"] = "five";
        InvalidEditException notANumber = Assert.Throws<InvalidEditException>(() => SnapshotInjector.Apply(new SnapshotEditor(m), m, null, Write("text.json")));
        Assert.EndsWith(".reg", notANumber.Target, StringComparison.Ordinal);

        dev["id"] = "no-such-dev";
        VmStateNotFoundException device = Assert.Throws<VmStateNotFoundException>(() => SnapshotInjector.Apply(new SnapshotEditor(m), m, null, Write("device.json")));
        Assert.Equal((VmStateObjectKind.Device, "no-such-dev"), (device.Kind, device.Name));
    }
}
