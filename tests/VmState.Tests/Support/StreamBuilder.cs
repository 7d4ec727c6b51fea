using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace VmState.Tests.Support;

/// <summary>Builds QEMU migration streams in code, with a matching VM description, for tests.</summary>
public sealed class StreamBuilder
{
    private readonly List<(string Name, ulong Length, ulong Address)> _blocks = [];
    private readonly List<(string Block, ulong Offset, byte[]? Data, byte Fill)> _pages = [];
    private readonly List<Device> _devices = [];

    public StreamBuilder(string? machineType = "pc-i440fx-7.2") => MachineType = machineType;

    public string? MachineType { get; }

    public List<string> Capabilities { get; } = [];

    /// <summary>Offsets of interesting places in the last built stream.</summary>
    public Dictionary<string, long> Marks { get; } = [];

    public bool WriteVmDescription { get; set; } = true;

    public bool WriteFooters { get; set; } = true;

    /// <summary>Adds a RAM block; <paramref name="address"/> is written after it when the capabilities include x-ignore-shared.</summary>
    public StreamBuilder Block(string name, ulong length, ulong address = 0)
    {
        _blocks.Add((name, length, address));
        return this;
    }

    public StreamBuilder Page(string block, ulong offset, byte[] data)
    {
        _pages.Add((block, offset, data, 0));
        return this;
    }

    public StreamBuilder Fill(string block, ulong offset, byte fill = 0)
    {
        _pages.Add((block, offset, null, fill));
        return this;
    }

    public StreamBuilder AddDevice(Device device)
    {
        _devices.Add(device);
        return this;
    }

    /// <summary>
    /// A "cpu" section with the fields X86CpuSectionDecoder needs, in QEMU's order; with <paramref name="syscallMsrs"/>
    /// also env.star, env.lstar, env.cstar and env.fmask (QEMU 7.2 target/i386/machine.c, before env.kernelgsbase).
    /// </summary>
    public StreamBuilder Cpu(int index, ulong[] regs, ulong rip, ulong cr3, ulong efer = 0x500, ulong cr0 = 0x80050033, ulong cr4 = 0x3006f0, bool syscallMsrs = false)
    {
        var d = new Device("cpu", index, "cpu", 12);
        d.Fields.Add(Field.Array("env.regs", "uint64", 8, regs.Select(r => Be(r, 8)).ToArray()));
        d.Fields.Add(Field.Int("env.eip", "uint64", 8, rip));
        d.Fields.Add(Field.Int("env.eflags", "uint64", 8, 0x246));
        d.Fields.Add(Field.Int("env.hflags", "uint32", 4, 0x40b3));
        var segs = new List<Field>();
        for (int i = 0; i < 6; i++)
        {
            segs.Add(Segment("env.segs", (uint)(0x10 + (i * 8)), (ulong)i * 0x1000, 0xffffffff, 0xa09b00));
        }

        d.Fields.Add(new Field("env.segs", "struct", 20, null, segs, ArrayLength: 6));
        d.Fields.Add(Segment("env.ldt", 0, 0, 0xffff, 0x8200));
        d.Fields.Add(Segment("env.tr", 0x40, 0xfffffe0000003000, 0x4087, 0x8b00));
        d.Fields.Add(Segment("env.gdt", 0, 0xfffffe0000001000, 0x7f, 0));
        d.Fields.Add(Segment("env.idt", 0, 0xfffffe0000000000, 0xfff, 0));
        d.Fields.Add(Field.Int("env.cr[0]", "uint64", 8, cr0));
        d.Fields.Add(Field.Int("env.cr[2]", "uint64", 8, 0));
        d.Fields.Add(Field.Int("env.cr[3]", "uint64", 8, cr3));
        d.Fields.Add(Field.Int("env.cr[4]", "uint64", 8, cr4));
        d.Fields.Add(Field.Int("env.efer", "uint64", 8, efer));
        if (syscallMsrs)
        {
            d.Fields.Add(Field.Int("env.star", "uint64", 8, 0x23001000000000));
            d.Fields.Add(Field.Int("env.lstar", "uint64", 8, 0xffffffff81e00080));
            d.Fields.Add(Field.Int("env.cstar", "uint64", 8, 0xffffffff81e019b0));
            d.Fields.Add(Field.Int("env.fmask", "uint64", 8, 0x257fd5));
        }

        d.Fields.Add(Field.Int("env.kernelgsbase", "uint64", 8, 0xffff888000000000));
        d.Subsections.Add(new Device("cpu/msr_smi_count", 0, "cpu/msr_smi_count", 1) { Fields = { Field.Int("env.msr_smi_count", "uint64", 8, 0) } });
        return AddDevice(d);
    }

    public static Field Segment(string name, uint selector, ulong @base, uint limit, uint flags) =>
        new(name, "struct", 20, null,
        [
            Field.Int("selector", "uint32", 4, selector),
            Field.Int("base", "uint64", 8, @base),
            Field.Int("limit", "uint32", 4, limit),
            Field.Int("flags", "uint32", 4, flags),
        ]);

    public byte[] Build()
    {
        Marks.Clear();
        var s = new MemoryStream();
        Be32(s, 0x5145564D);
        Be32(s, 3);
        if (MachineType is not null)
        {
            Marks["config"] = s.Position;
            s.WriteByte(0x07);
            byte[] mt = Encoding.ASCII.GetBytes(MachineType);
            Be32(s, (uint)mt.Length);
            s.Write(mt);
            if (Capabilities.Count > 0)
            {
                s.WriteByte(0x05);
                Str8(s, "configuration/capabilities");
                Be32(s, 1);
                Be32(s, (uint)Capabilities.Count);
                foreach (string c in Capabilities)
                {
                    Str8(s, c);
                }
            }
        }

        int sectionId = 0;
        if (_blocks.Count > 0)
        {
            int ramId = sectionId++;
            Marks["ram-start"] = s.Position;
            s.WriteByte(0x01);
            Be32(s, (uint)ramId);
            Str8(s, "ram");
            Be32(s, 0);
            Be32(s, 4);
            ulong total = 0;
            foreach (var b in _blocks)
            {
                total += b.Length;
            }

            Be64(s, total | 0x04);
            foreach (var b in _blocks)
            {
                Str8(s, b.Name);
                Be64(s, b.Length);
                if (Capabilities.Contains("x-ignore-shared"))
                {
                    Be64(s, b.Address);
                }
            }

            Be64(s, 0x10);
            Footer(s, ramId);
            Marks["ram-part"] = s.Position;
            s.WriteByte(0x02);
            Be32(s, (uint)ramId);
            string? last = null;
            foreach (var p in _pages)
            {
                ulong flags = p.Data is null ? 0x02UL : 0x08UL;
                bool cont = p.Block == last;
                if (cont)
                {
                    flags |= 0x20;
                }

                Be64(s, p.Offset | flags);
                if (!cont)
                {
                    Str8(s, p.Block);
                }

                last = p.Block;
                if (p.Data is null)
                {
                    s.WriteByte(p.Fill);
                }
                else
                {
                    s.Write(p.Data);
                }
            }

            Be64(s, 0x10);
            Footer(s, ramId);
            Marks["ram-end"] = s.Position;
            s.WriteByte(0x03);
            Be32(s, (uint)ramId);
            Be64(s, 0x10);
            Footer(s, ramId);
        }

        foreach (Device d in _devices)
        {
            int id = sectionId++;
            Marks[$"device:{d.IdStr}#{d.InstanceId}"] = s.Position;
            s.WriteByte(0x04);
            Be32(s, (uint)id);
            Str8(s, d.IdStr);
            Be32(s, (uint)d.InstanceId);
            Be32(s, (uint)d.Version);
            WriteBody(s, d);
            Footer(s, id);
        }

        Marks["eof"] = s.Position;
        s.WriteByte(0x00);
        if (WriteVmDescription)
        {
            byte[] json = Description();
            Marks["vmdesc"] = s.Position;
            s.WriteByte(0x06);
            Be32(s, (uint)json.Length);
            s.Write(json);
        }

        return s.ToArray();
    }

    private void Footer(MemoryStream s, int id)
    {
        if (WriteFooters)
        {
            s.WriteByte(0x7E);
            Be32(s, (uint)id);
        }
    }

    private static void WriteBody(MemoryStream s, Device d)
    {
        foreach (Field f in d.Fields)
        {
            WriteField(s, f);
        }

        foreach (Device sub in d.Subsections)
        {
            s.WriteByte(0x05);
            Str8(s, sub.VmsdName);
            Be32(s, (uint)sub.Version);
            WriteBody(s, sub);
        }
    }

    private static void WriteField(MemoryStream s, Field f)
    {
        if (f.Elements is not null && f.Type != "struct")
        {
            foreach (byte[] e in f.Elements)
            {
                s.Write(e);
            }

            return;
        }

        if (f.Children is not null)
        {
            int count = f.ArrayLength ?? 1;
            if (f.ArrayLength is null)
            {
                foreach (Field c in f.Children)
                {
                    WriteField(s, c);
                }
            }
            else
            {
                // Array of structs: Children holds one struct field per element.
                for (int i = 0; i < count; i++)
                {
                    foreach (Field c in f.Children[i].Children!)
                    {
                        WriteField(s, c);
                    }
                }
            }

            return;
        }

        s.Write(f.Data!);
    }

    private byte[] Description()
    {
        var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteNumber("page_size", 4096);
            w.WriteStartArray("devices");
            foreach (Device d in _devices)
            {
                w.WriteStartObject();
                w.WriteString("name", d.IdStr);
                w.WriteNumber("instance_id", d.InstanceId);
                w.WriteString("vmsd_name", d.VmsdName);
                w.WriteNumber("version", d.Version);
                DescribeBody(w, d);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        return ms.ToArray();
    }

    private static void DescribeBody(Utf8JsonWriter w, Device d)
    {
        w.WriteStartArray("fields");
        foreach (Field f in d.Fields)
        {
            DescribeField(w, f);
        }

        w.WriteEndArray();
        if (d.Subsections.Count > 0)
        {
            w.WriteStartArray("subsections");
            foreach (Device sub in d.Subsections)
            {
                w.WriteStartObject();
                w.WriteString("vmsd_name", sub.VmsdName);
                w.WriteNumber("version", sub.Version);
                DescribeBody(w, sub);
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }
    }

    private static void DescribeField(Utf8JsonWriter w, Field f)
    {
        w.WriteStartObject();
        w.WriteString("name", f.Name);
        if (f.ArrayLength is int n)
        {
            w.WriteNumber("array_len", n);
        }

        w.WriteString("type", f.Type);
        if (f.Children is not null)
        {
            w.WriteStartObject("struct");
            w.WriteString("vmsd_name", "segment");
            w.WriteNumber("version", 1);
            w.WriteStartArray("fields");
            IEnumerable<Field> children = f.ArrayLength is null ? f.Children : f.Children[0].Children!;
            foreach (Field c in children)
            {
                DescribeField(w, c);
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        w.WriteNumber("size", f.Size);
        w.WriteEndObject();
    }

    public static byte[] Be(ulong v, int size)
    {
        byte[] b = new byte[size];
        for (int i = 0; i < size; i++)
        {
            b[size - 1 - i] = (byte)(v >> (8 * i));
        }

        return b;
    }

    private static void Be32(Stream s, uint v)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, v);
        s.Write(b);
    }

    private static void Be64(Stream s, ulong v)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, v);
        s.Write(b);
    }

    private static void Str8(Stream s, string v)
    {
        byte[] b = Encoding.ASCII.GetBytes(v);
        s.WriteByte((byte)b.Length);
        s.Write(b);
    }

    /// <summary>A device section (or subsection) to write.</summary>
    public sealed class Device(string idStr, int instanceId, string vmsdName, int version)
    {
        public string IdStr { get; } = idStr;

        public int InstanceId { get; } = instanceId;

        public string VmsdName { get; } = vmsdName;

        public int Version { get; } = version;

        public List<Field> Fields { get; init; } = [];

        public List<Device> Subsections { get; init; } = [];
    }

    /// <summary>A field: raw bytes (Data), an array of equal-size elements (Elements), or a struct (Children).</summary>
    public sealed record Field(string Name, string Type, int Size, byte[]? Data, List<Field>? Children = null, int? ArrayLength = null, byte[][]? Elements = null)
    {
        public static Field Int(string name, string type, int size, ulong value) => new(name, type, size, Be(value, size));

        public static Field Bytes(string name, byte[] data) => new(name, "buffer", data.Length, data);

        public static Field Array(string name, string type, int size, byte[][] elements) => new(name, type, size, null, null, elements.Length, elements);
    }
}
