using System.Net;
using System.Net.Sockets;
using System.Text;
using VmState.Export;
using VmState.Formats.Migration;
using VmState.Gdb;
using VmState.IO;
using VmState.Machine;
using VmState.Tests.Support;

namespace VmState.Tests.Gdb;

public sealed class GdbRemoteServerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-gdb-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static MachineState Machine()
    {
        var b = new StreamBuilder().Block("pc.ram", 1 << 20).Page("pc.ram", 0x5000, Enumerable.Range(0, 4096).Select(i => (byte)i).ToArray());
        b.Cpu(0, [.. Enumerable.Range(0, 16).Select(i => (ulong)(0x100 + i))], rip: 0xffffffff81000000, cr3: 0, cr0: 0x11, efer: 0);
        b.Cpu(1, [.. Enumerable.Range(0, 16).Select(i => (ulong)(0x200 + i))], rip: 0xffffffff81000010, cr3: 0, cr0: 0x11, efer: 0);
        return MigrationMachineReader.Read(new MemorySource(b.Build()), "synthetic");
    }

    private static (GdbTestClient Client, Task Server) Connect(GdbRemoteServer server)
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var client = new GdbTestClient(((IPEndPoint)listener.LocalEndpoint).Port);
        TcpClient accepted = listener.AcceptTcpClient();
        listener.Stop();
        Task serve = Task.Run(async () =>
        {
            using (accepted)
            {
                await server.ServeAsync(accepted.GetStream(), CancellationToken.None);
            }
        });
        return (client, serve);
    }

    [Fact]
    public async Task RegistersMemoryThreadsWritesAndSave()
    {
        using MachineState m = Machine();
        var server = new GdbRemoteServer(m, TextWriter.Null, new GdbServerOptions { SaveDirectory = new SaveDirectory(_dir, false, null) }) { PhysicalMode = true };
        (GdbTestClient c, Task serve) = Connect(server);
        using (c)
        {
            Assert.Contains("qXfer:features:read+", c.Send("qSupported:multiprocess+"), StringComparison.Ordinal);
            Assert.Equal("OK", c.Send("QStartNoAckMode"));
            string xml = c.Send("qXfer:features:read:target.xml:0,ffff");
            Assert.StartsWith("l<?xml", xml, StringComparison.Ordinal);
            Assert.Contains("name=\"cr3\"", xml, StringComparison.Ordinal);
            Assert.Equal("m1,2", c.Send("qfThreadInfo"));

            string g = c.Send("g");
            int expectedBytes = X86TargetDescription.Registers.Sum(r => r.Bits / 8);
            Assert.Equal(expectedBytes * 2, g.Length);
            Assert.StartsWith("0001000000000000", g, StringComparison.Ordinal); // rax = 0x100, little-endian

            Assert.Equal("OK", c.Send("Hg2"));
            Assert.Equal("10000081ffffffff", c.Send("p10")); // regnum 16 = rip of vCPU 1
            Assert.Equal("0102000000000000", c.Send("p2"));  // gdb's order is rax, rbx, rcx: rcx = 0x201
            Assert.Equal("0302000000000000", c.Send("p1"));  // rbx = 0x203 (x86 encoding order puts rbx fourth)

            Assert.Equal("0001020304050607", c.Send("m5000,8"));
            Assert.Equal("OK", c.Send("M5002,2:aabb"));
            Assert.Equal("0001aabb04050607", c.Send("m5000,8"));
            Assert.Equal("E14", c.Send("m7ffffff000,8"));
            Assert.Equal("OK", c.Send("P0=efbeadde00000000"));

            Assert.Equal("OK", c.Send("qRcmd," + Convert.ToHexStringLower(Encoding.ASCII.GetBytes("save s.mig"))));
            Assert.Equal("OK", c.Send("D"));
        }

        await serve;
        using MachineState back = MigrationMachineReader.Read(new FileSource(Path.Combine(_dir, "s.mig")), "s");
        Assert.Equal(0xdeadbeefUL, back.Cpus[1].Regs[0]);
        Assert.Equal(0x100UL, back.Cpus[0].Regs[0]);
        byte[] page = new byte[4];
        back.Memory.Read(0x5000, page);
        Assert.Equal(new byte[] { 0, 1, 0xaa, 0xbb }, page);
    }

    [Fact]
    public void HgForAMissingVcpuGShortOrLongAndPOfWrongSizeAreErrors()
    {
        using var h = new GdbServerHarness(GdbServerHarness.InMemoryMachine(), new GdbServerOptions());
        using GdbTestClient c = h.Connect();
        int block = X86TargetDescription.Registers.Sum(r => r.Bits / 8);
        string g = c.Send("g");

        // Two vCPUs are threads 1 and 2: thread 3 (and 0x10, and garbage) does not exist, and selecting it must
        // not seem to work (gdb would then show vCPU 0's registers as thread 3's).
        Assert.StartsWith("E", c.Send("Hg3"), StringComparison.Ordinal);
        Assert.StartsWith("E", c.Send("Hg10"), StringComparison.Ordinal);
        Assert.StartsWith("E", c.Send("Hgzz"), StringComparison.Ordinal);
        Assert.StartsWith("E", c.Send("Hc5"), StringComparison.Ordinal);
        Assert.Equal("OK", c.Send("Hg2"));
        Assert.Equal("OK", c.Send("Hg0"));
        Assert.Equal("OK", c.Send("Hc-1"));
        Assert.StartsWith("E", c.Send("T3"), StringComparison.Ordinal);
        Assert.StartsWith("E", c.Send("qThreadExtraInfo,3"), StringComparison.Ordinal);

        // G with a block one byte short or long, or odd length: refused, nothing written.
        Assert.Equal("OK", c.Send("Hg1"));
        string changed = "efbeadde00000000" + g[16..];
        Assert.Equal("E22", c.Send("G" + changed[..^2]));
        Assert.Equal("E22", c.Send("G" + changed + "00"));
        Assert.Equal("E22", c.Send("G" + changed[..^1]));
        Assert.Equal(g, c.Send("g"));
        Assert.Empty(h.Server.Edits);

        // P of an unknown register or with a value of the wrong size; p of an unknown register.
        Assert.Equal("E45", c.Send($"P{X86TargetDescription.Registers.Count:x}=0000000000000000"));
        Assert.Equal("E22", c.Send("P0=efbeadde"));
        Assert.Equal("E22", c.Send("P0=efbeadde0000000000"));
        Assert.Equal("E45", c.Send("pfff"));
        Assert.Empty(h.Server.Edits);

        // The right sizes still work.
        Assert.Equal("OK", c.Send("G" + changed));
        Assert.Equal("efbeadde00000000", c.Send("p0"));
        Assert.Equal("OK", c.Send("P0=0100000000000000"));
        Assert.Equal("0100000000000000", c.Send("p0"));
    }
}
