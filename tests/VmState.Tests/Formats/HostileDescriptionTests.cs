using System.Buffers.Binary;
using System.Text;
using VmState.Formats.Migration;
using VmState.Formats;
using VmState.IO;
using VmState.Machine;
using VmState.Tests.Support;

namespace VmState.Tests.Formats;

/// <summary>
/// VM descriptions whose counts and sizes are hostile: the reader must refuse them before it allocates or loops,
/// with memory proportional to the input, and say which field and offset.
/// </summary>
public class HostileDescriptionTests
{
    /// <summary>A stream with one device "dev" 0 whose body is the 4 bytes 00 00 00 2a, and no description.</summary>
    private static (byte[] Stream, long Body) OneDevice()
    {
        var b = new StreamBuilder { WriteVmDescription = false };
        b.AddDevice(new StreamBuilder.Device("dev", 0, "dev", 1) { Fields = { StreamBuilder.Field.Int("x", "uint32", 4, 42) } });
        byte[] s = b.Build();
        long header = 1 + 4 + 1 + 3 + 4 + 4;
        return (s, b.Marks["device:dev#0"] + header);
    }

    /// <summary>Appends QEMU's 0x06 + be32 length + JSON after the EOF byte.</summary>
    private static byte[] WithDescription(byte[] stream, string json)
    {
        byte[] j = Encoding.UTF8.GetBytes(json);
        byte[] result = new byte[stream.Length + 5 + j.Length];
        stream.CopyTo(result, 0);
        result[stream.Length] = 0x06;
        BinaryPrimitives.WriteUInt32BigEndian(result.AsSpan(stream.Length + 1), (uint)j.Length);
        j.CopyTo(result, stream.Length + 5);
        return result;
    }

    private static string Device(string fields) =>
        $$"""{"page_size":4096,"devices":[{"name":"dev","instance_id":0,"vmsd_name":"dev","version":1,"fields":[{{fields}}]}]}""";

    private static VmStateFormatException ReadFails(byte[] data, ReaderLimits? limits = null, long maxAllocated = 64 << 20)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<VmStateFormatException>(() => MigrationStreamReader.Read(new MemorySource(data), limits));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < maxAllocated, $"rejecting a {data.Length}-byte stream allocated {allocated} bytes");
        return e;
    }

    [Fact]
    public void TheWellFormedDeviceDecodes()
    {
        (byte[] s, long body) = OneDevice();
        using MigrationStream m = MigrationStreamReader.Read(new MemorySource(WithDescription(s, Device("""{"name":"x","type":"uint32","size":4}"""))));
        DeviceField x = m.Devices[0].State!.Field("x")!;
        Assert.Equal(42UL, x.Integer);
        Assert.Equal(body, x.Offset);
    }

    [Fact]
    public void ZeroSizeElementsWithAHugeArrayLenAreRefusedBeforeAllocating()
    {
        // Before the fix: a DeviceField[2^31-1] (16 GiB) or OutOfMemoryException, and a loop of 2^31 elements.
        (byte[] s, long body) = OneDevice();
        byte[] data = WithDescription(s, Device("""{"name":"empty","array_len":2147483647,"type":"uint8","size":0},{"name":"x","type":"uint32","size":4}"""));
        VmStateFormatException e = ReadFails(data);
        Assert.Equal(body, e.Offset);
        Assert.Contains("dev.empty", e.Message);
        Assert.Contains("2147483647 elements of 0 bytes", e.Message);
        Assert.Contains("MaxEmptyElements", e.Message);
    }

    [Fact]
    public void AnElementThatDisagreesWithItsSizeIsNamedWithItsPath()
    {
        // Element paths are built only for errors; the error still names the element as "dev.s[0]".
        (byte[] s, long body) = OneDevice();
        byte[] data = WithDescription(s, Device("""{"name":"s","array_len":2,"type":"struct","size":2,"struct":{"vmsd_name":"inner","version":1,"fields":[{"name":"y","type":"uint8","size":1}]}}"""));
        VmStateFormatException e = ReadFails(data);
        Assert.Equal(body, e.Offset);
        Assert.Contains("field dev.s[0] (struct, 2 bytes)", e.Message);
        Assert.Contains("its fields and subsections take 1", e.Message);
    }

    [Fact]
    public void ZeroSizeElementsWithinTheLimitAreAccepted()
    {
        (byte[] s, _) = OneDevice();
        byte[] data = WithDescription(s, Device("""{"name":"empty","array_len":100,"type":"uint8","size":0},{"name":"x","type":"uint32","size":4}"""));
        using MigrationStream m = MigrationStreamReader.Read(new MemorySource(data));
        Assert.Equal(100, m.Devices[0].State!.Field("empty")!.Elements!.Count);
        Assert.Equal(42UL, m.Devices[0].State!.Field("x")!.Integer);
    }

    [Fact]
    public void NestedZeroSizeArraysCannotMultiplyPastTheBudget()
    {
        // 4000 empty structs of 4000 empty elements each: 16 million objects from 200 bytes of JSON. Each array
        // alone is under the 4096 limit; the budget is per stream, so the product is what is refused.
        (byte[] s, long body) = OneDevice();
        string inner = """{"vmsd_name":"e","version":1,"fields":[{"name":"z","array_len":4000,"type":"uint8","size":0}]}""";
        byte[] data = WithDescription(s, Device($$"""{"name":"outer","array_len":4000,"type":"struct","struct":{{inner}},"size":0},{"name":"x","type":"uint32","size":4}"""));
        VmStateFormatException e = ReadFails(data);
        Assert.InRange(e.Offset, body, body + 4);
        Assert.Contains("MaxEmptyElements", e.Message);
    }

    [Fact]
    public void ArrayLargerThanTheDeviceDataIsRefusedBeforeAllocating()
    {
        // 2^31-1 elements of 8 bytes: 16 GiB claimed by a stream of a few hundred bytes.
        (byte[] s, long body) = OneDevice();
        byte[] data = WithDescription(s, Device("""{"name":"big","array_len":2147483647,"type":"uint64","size":8}"""));
        VmStateFormatException e = ReadFails(data);
        Assert.Equal(body, e.Offset);
        Assert.Contains("dev.big", e.Message);
        Assert.Contains("17179869176 bytes", e.Message);
    }

    [Fact]
    public void FieldsCannotReachIntoTheVmDescription()
    {
        // The device has 4 bytes; a 20-byte field would read the EOF byte and the description's own bytes as data.
        (byte[] s, long body) = OneDevice();
        byte[] data = WithDescription(s, Device("""{"name":"x","type":"buffer","size":20}"""));
        VmStateFormatException e = ReadFails(data);
        Assert.Equal(body, e.Offset);
        Assert.Contains("20 bytes", e.Message);
        Assert.Contains($"before offset {s.Length - 1}", e.Message);
    }

    [Fact]
    public void DecodedFieldCountIsCappedByReaderLimits()
    {
        (byte[] s, _) = OneDevice();
        byte[] data = WithDescription(s, Device("""{"name":"x","array_len":4,"type":"uint8","size":1}"""));
        using (MigrationStream ok = MigrationStreamReader.Read(new MemorySource(data), new ReaderLimits { MaxDecodedFields = 5 }))
        {
            Assert.Equal(4, ok.Devices[0].State!.Field("x")!.Elements!.Count);
        }

        VmStateFormatException e = ReadFails(data, new ReaderLimits { MaxDecodedFields = 4 });
        Assert.Contains("MaxDecodedFields", e.Message);
    }

    [Fact]
    public void HugeDescriptionCountsCostMemoryProportionalToTheInput()
    {
        // Many hostile fields at once: every one is refused or bounded, and the whole read stays small.
        (byte[] s, _) = OneDevice();
        var fields = new StringBuilder();
        for (int i = 0; i < 200; i++)
        {
            string name = "e" + i.ToString(System.Globalization.CultureInfo.InvariantCulture);
            fields.Append($$"""{"name":"{{name}}","array_len":4096,"type":"uint8","size":0},""");
        }

        fields.Append("""{"name":"x","type":"uint32","size":4}""");
        VmStateFormatException e = ReadFails(WithDescription(s, Device(fields.ToString())), maxAllocated: 16 << 20);
        Assert.Contains("MaxEmptyElements", e.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-4096)]
    [InlineData(4095)]
    [InlineData(1 << 30)]
    public void PageSizesQemuCannotHaveAreRefused(int pageSize)
    {
        // page_size 0 made the RAM index divide by zero (the description's page size is used until a
        // configuration section gives target-page-bits).
        (byte[] s, _) = OneDevice();
        string json = Device("""{"name":"x","type":"uint32","size":4}""").Replace("\"page_size\":4096", "\"page_size\":" + pageSize.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
        VmStateFormatException e = ReadFails(WithDescription(s, json));
        Assert.Equal(s.Length + 5, e.Offset);
        Assert.Contains("page_size", e.Message);
    }
}
