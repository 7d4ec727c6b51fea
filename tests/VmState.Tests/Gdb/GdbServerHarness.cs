using System.Net;
using System.Net.Sockets;
using VmState.Formats.Migration;
using VmState.Gdb;
using VmState.IO;
using VmState.Machine;
using VmState.Tests.Support;

namespace VmState.Tests.Gdb;

/// <summary>A server over a two-vCPU synthetic snapshot, listening on a loopback port as the CLI does.</summary>
internal sealed class GdbServerHarness : IDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();

    public GdbServerHarness(MachineState machine, GdbServerOptions options, bool once = false)
    {
        Machine = machine;
        Server = new GdbRemoteServer(machine, Log, options) { PhysicalMode = true };
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        Listening = Server.ListenAsync(_listener, once, _stop.Token);
    }

    public MachineState Machine { get; }

    public GdbRemoteServer Server { get; }

    /// <summary>The server's log; the server writes it on its own thread while tests read it.</summary>
    public LockedStringWriter Log { get; } = new();

    public int Port { get; }

    public Task Listening { get; }

    /// <summary>Bytes of the two-vCPU stream: 1 MiB of RAM, page 0x5000 holds 0, 1, 2, …</summary>
    public static byte[] StreamBytes()
    {
        var b = new StreamBuilder().Block("pc.ram", 1 << 20).Page("pc.ram", 0x5000, Enumerable.Range(0, 4096).Select(i => (byte)i).ToArray());
        b.Cpu(0, [.. Enumerable.Range(0, 16).Select(i => (ulong)(0x100 + i))], rip: 0xffffffff81000000, cr3: 0, cr0: 0x11, efer: 0);
        b.Cpu(1, [.. Enumerable.Range(0, 16).Select(i => (ulong)(0x200 + i))], rip: 0xffffffff81000010, cr3: 0, cr0: 0x11, efer: 0);
        return b.Build();
    }

    public static MachineState InMemoryMachine() => MigrationMachineReader.Read(new MemorySource(StreamBytes()), "synthetic");

    public static MachineState FileMachine(string path) => MigrationMachineReader.Read(new FileSource(path), path);

    public GdbTestClient Connect(int receiveBufferSize = 0) => new(Port, receiveBufferSize);

    public void Dispose()
    {
        _stop.Cancel();
        try
        {
            Listening.Wait(TimeSpan.FromSeconds(10));
        }
        catch (AggregateException)
        {
        }

        _listener.Stop();
        _stop.Dispose();
        Machine.Dispose();
    }
}

/// <summary>A StringWriter that one thread may write while another reads it (a StringBuilder is not thread-safe).</summary>
internal sealed class LockedStringWriter : StringWriter
{
    private readonly Lock _lock = new();

    public override void Write(char value)
    {
        lock (_lock)
        {
            base.Write(value);
        }
    }

    public override void Write(string? value)
    {
        lock (_lock)
        {
            base.Write(value);
        }
    }

    public override void Write(char[] buffer, int index, int count)
    {
        lock (_lock)
        {
            base.Write(buffer, index, count);
        }
    }

    public override void Write(ReadOnlySpan<char> buffer)
    {
        lock (_lock)
        {
            base.Write(buffer);
        }
    }

    public override void WriteLine(string? value)
    {
        lock (_lock)
        {
            base.WriteLine(value);
        }
    }

    public override void WriteLine(ReadOnlySpan<char> buffer)
    {
        lock (_lock)
        {
            base.WriteLine(buffer);
        }
    }

    public override string ToString()
    {
        lock (_lock)
        {
            return base.ToString();
        }
    }
}
