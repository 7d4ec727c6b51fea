using System.Text;
using VmState.Gdb;

namespace VmState.Tests.Gdb;

public sealed class GdbPacketReaderTests
{
    private static async Task<List<GdbPacket>> ReadAll(string wire, int max = 16)
    {
        var reader = new GdbPacketReader(new MemoryStream(Encoding.Latin1.GetBytes(wire)), max);
        var packets = new List<GdbPacket>();
        while (await reader.ReadAsync(CancellationToken.None) is GdbPacket p)
        {
            packets.Add(p);
        }

        return packets;
    }

    [Fact]
    public async Task PacketsInterruptsAndErrorsAreTold()
    {
        List<GdbPacket> p = await ReadAll("+-noise$g#67\u0003$#00$m0,1#00$}]#" + Sum("}]") + "$abcdefghijklmnopq#00$abcdefghijklmnopq#" + Sum("abcdefghijklmnopq") + "$x}#" + Sum("x}") + "$partial#6");
        Assert.Equal(
            [
                new GdbPacket(GdbPacketKind.Packet, "g"),
                new GdbPacket(GdbPacketKind.Interrupt, string.Empty),
                new GdbPacket(GdbPacketKind.Packet, string.Empty),
                new GdbPacket(GdbPacketKind.BadChecksum, string.Empty),
                new GdbPacket(GdbPacketKind.Packet, "}"),
                new GdbPacket(GdbPacketKind.BadChecksum, string.Empty),
                new GdbPacket(GdbPacketKind.TooLong, string.Empty),
                new GdbPacket(GdbPacketKind.Malformed, string.Empty),
            ],
            p);
    }

    [Fact]
    public async Task APacketAtTheBoundIsRead() =>
        Assert.Equal(new GdbPacket(GdbPacketKind.Packet, new string('a', 16)), (await ReadAll("$" + new string('a', 16) + "#" + Sum(new string('a', 16))))[0]);

    private static string Sum(string s)
    {
        byte sum = 0;
        foreach (char c in s)
        {
            sum += (byte)c;
        }

        return sum.ToString("x2", System.Globalization.CultureInfo.InvariantCulture);
    }
}
