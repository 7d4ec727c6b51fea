using System.Globalization;
using System.Text.Json;
using VmState.Arch.X86;
using VmState.Machine;

namespace VmState.Export;

/// <summary>
/// Writes the hardware state of a machine as JSON: RAM blocks and their mappings, vCPU registers as a readable
/// block, and every device section with every field (name, QEMU type, stream offset, size, value), its
/// subsections, and well-known values decoded (NIC MAC addresses). Format id "vmstate-hardware/1".
/// </summary>
public static class HardwareJsonWriter
{
    /// <summary>The format identifier written as "format".</summary>
    public const string FormatId = "vmstate-hardware/1";

    /// <summary>Writes the document to <paramref name="stream"/>.</summary>
    public static void Write(MachineState machine, Stream stream, bool indented = true)
    {
        // The calls below always make a well-formed document (the writer's structure checks would only repeat that).
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = indented, SkipValidation = true });
        w.WriteStartObject();
        w.WriteString("format", FormatId);
        w.WriteStartObject("source");
        w.WriteString("path", machine.SourcePath);
        w.WriteString("format", machine.Origin.Description);
        w.WriteString("machineType", machine.MachineType);
        if (machine.Origin.LibvirtDomainXml is string domainXml)
        {
            w.WriteString("libvirtDomainXml", domainXml);
        }

        w.WriteEndObject();
        w.WriteStartArray("warnings");
        foreach (string warning in machine.Warnings)
        {
            w.WriteStringValue(warning);
        }

        w.WriteEndArray();
        WriteRamBlocks(w, machine);
        w.WriteStartArray("cpus");
        foreach (X86CpuState cpu in machine.Cpus)
        {
            WriteCpu(w, cpu);
        }

        foreach (Arch.Arm64.Arm64CpuState cpu in machine.Arm64Cpus)
        {
            WriteArm64Cpu(w, cpu);
        }

        w.WriteEndArray();
        w.WriteStartArray("devices");
        foreach (DeviceState d in machine.Devices)
        {
            WriteDevice(w, d);

            // Hand the text to the stream in pieces: the writer would otherwise hold the whole document (~0.4 MB for
            // a pc guest), growing its buffer by doubling into the large object heap, where each step starts a GC.
            if (w.BytesPending >= FlushBytes)
            {
                w.Flush();
            }
        }

        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary>Pending bytes at which <see cref="Write"/> flushes (below the large object heap's 85,000 bytes).</summary>
    private const int FlushBytes = 32 << 10;

    // The property names written for every device and field, encoded once (the same bytes as the string overloads).
    private static readonly JsonEncodedText NameProperty = JsonEncodedText.Encode("name");
    private static readonly JsonEncodedText TypeProperty = JsonEncodedText.Encode("type");
    private static readonly JsonEncodedText OffsetProperty = JsonEncodedText.Encode("offset");
    private static readonly JsonEncodedText SizeProperty = JsonEncodedText.Encode("size");
    private static readonly JsonEncodedText IndexProperty = JsonEncodedText.Encode("index");
    private static readonly JsonEncodedText ValueProperty = JsonEncodedText.Encode("value");
    private static readonly JsonEncodedText VmsdProperty = JsonEncodedText.Encode("vmsd");
    private static readonly JsonEncodedText VersionProperty = JsonEncodedText.Encode("version");
    private static readonly JsonEncodedText FieldsProperty = JsonEncodedText.Encode("fields");
    private static readonly JsonEncodedText SubsectionsProperty = JsonEncodedText.Encode("subsections");

    /// <summary>Hex text "0x…" of a value, as used throughout the document.</summary>
    public static string Hex(ulong value) => "0x" + value.ToString("x", CultureInfo.InvariantCulture);

    private static void WriteRamBlocks(Utf8JsonWriter w, MachineState machine)
    {
        w.WriteStartArray("ramBlocks");
        foreach (RamBlockInfo b in machine.RamBlocks)
        {
            w.WriteStartObject();
            w.WriteString("name", b.Name);
            w.WriteNumber("length", b.Length);
            if (b.DataPages >= 0)
            {
                w.WriteNumber("dataPages", b.DataPages);
                w.WriteNumber("zeroPages", b.ZeroPages);
            }

            w.WriteStartArray("mappings");
            foreach (BlockMapping m in b.Mappings)
            {
                w.WriteStartObject();
                w.WriteString("guestPhysicalAddress", Hex(m.GuestPhysicalAddress));
                w.WriteString("blockOffset", Hex(m.BlockOffset));
                w.WriteString("length", Hex(m.Length));
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    /// <summary>
    /// Writes one AArch64 vCPU's object of the "cpus" array: index, architecture, halted, registers (x0–x30, sp, pc,
    /// pstate, sp_el0–3, elr_el1–3, spsr_el1, fpsr, fpcr) and the system registers of QEMU's cpreg list by name
    /// (TTBR1_EL1, or the generic S3_0_C… name, or the KVM id for AArch32 registers).
    /// </summary>
    public static void WriteArm64Cpu(Utf8JsonWriter w, Arch.Arm64.Arm64CpuState cpu)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(cpu);
        w.WriteStartObject();
        w.WriteNumber("index", cpu.Index);
        w.WriteString("architecture", "aarch64");
        if (cpu.Halted is bool halted)
        {
            w.WriteBoolean("halted", halted);
        }

        w.WriteStartObject("registers");
        for (int i = 0; i < 31; i++)
        {
            w.WriteString($"x{i}", Hex(cpu.X[i]));
        }

        w.WriteString("sp", Hex(cpu.Sp));
        w.WriteString("pc", Hex(cpu.Pc));
        w.WriteString("pstate", Hex(cpu.Pstate));
        for (int i = 0; i < 4; i++)
        {
            w.WriteString($"sp_el{i}", Hex(cpu.SpEl[i]));
        }

        for (int i = 1; i < 4; i++)
        {
            w.WriteString($"elr_el{i}", Hex(cpu.ElrEl[i]));
        }

        w.WriteString("spsr_el1", Hex(cpu.BankedSpsr[1]));
        if (cpu.HasFpSimd)
        {
            w.WriteString("fpsr", Hex(cpu.Fpsr));
            w.WriteString("fpcr", Hex(cpu.Fpcr));
        }

        w.WriteEndObject();
        w.WriteStartObject("systemRegisters");
        foreach (ulong id in cpu.SystemRegisterIds)
        {
            w.WriteString(Arch.Arm64.Arm64SystemRegisters.NameOf(id), Hex(cpu.SystemRegister(id) ?? 0));
        }

        w.WriteEndObject();
        w.WriteEndObject();
    }

    /// <summary>Writes one vCPU's object of the "cpus" array (index, halted, registers, segments).</summary>
    public static void WriteCpu(Utf8JsonWriter w, X86CpuState cpu)
    {
        w.WriteStartObject();
        w.WriteNumber("index", cpu.Index);
        if (cpu.Halted is bool halted)
        {
            w.WriteBoolean("halted", halted);
        }

        w.WriteStartObject("registers");
        foreach (X86Register r in X86Registers.All)
        {
            if (r.InHardwareFile)
            {
                w.WriteString(r.Name, Hex(r.Get(cpu)));
            }
        }

        w.WriteEndObject();
        w.WriteStartObject("segments");
        for (int i = 0; i < 6; i++)
        {
            WriteSegment(w, X86CpuState.SegmentNames[i], cpu.Segments[i]);
        }

        WriteSegment(w, "ldt", cpu.Ldt);
        WriteSegment(w, "tr", cpu.Tr);
        WriteSegment(w, "gdt", cpu.Gdt);
        WriteSegment(w, "idt", cpu.Idt);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static void WriteSegment(Utf8JsonWriter w, string name, X86Segment s)
    {
        w.WriteStartObject(name);
        w.WriteString("selector", Hex(s.Selector));
        w.WriteString("base", Hex(s.Base));
        w.WriteString("limit", Hex(s.Limit));
        w.WriteString("flags", Hex(s.Flags));
        w.WriteEndObject();
    }

    /// <summary>Writes one device's object of the "devices" array (id, instance, section, decoded values, VMSD fields).</summary>
    public static void WriteDevice(Utf8JsonWriter w, DeviceState d)
    {
        w.WriteStartObject();
        w.WriteString("id", d.IdStr);
        w.WriteNumber("instance", d.InstanceId);
        w.WriteNumber("sectionId", d.SectionId);
        w.WriteNumber("offset", d.Offset);
        w.WriteNumber("length", d.Length);
        if (d.Decoded.Count > 0)
        {
            w.WriteStartObject("decoded");
            foreach ((string k, string v) in d.Decoded)
            {
                w.WriteString(k, v);
            }

            w.WriteEndObject();
        }

        if (d.State is not null)
        {
            w.WriteString(VmsdProperty, d.State.VmsdName);
            w.WriteNumber(VersionProperty, d.State.Version);
            WriteFieldsAndSubsections(w, d.State);
        }

        w.WriteEndObject();
    }

    private static void WriteFieldsAndSubsections(Utf8JsonWriter w, VmsdState s)
    {
        w.WriteStartArray(FieldsProperty);
        foreach (DeviceField f in s.Fields)
        {
            WriteField(w, f);
        }

        w.WriteEndArray();
        if (s.Subsections.Count > 0)
        {
            w.WriteStartArray(SubsectionsProperty);
            foreach (VmsdState sub in s.Subsections)
            {
                w.WriteStartObject();
                w.WriteString(NameProperty, sub.VmsdName);
                w.WriteNumber(VersionProperty, sub.Version);
                w.WriteNumber(OffsetProperty, sub.Offset);
                WriteFieldsAndSubsections(w, sub);
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }
    }

    private static void WriteField(Utf8JsonWriter w, DeviceField f)
    {
        w.WriteStartObject();
        w.WriteString(NameProperty, f.Name);
        w.WriteString(TypeProperty, f.Type);
        w.WriteNumber(OffsetProperty, f.Offset);
        w.WriteNumber(SizeProperty, f.Size);
        if (f.Index is int index)
        {
            w.WriteNumber(IndexProperty, index);
        }

        w.WritePropertyName(ValueProperty);
        WriteValue(w, f);
        w.WriteEndObject();
    }

    private static void WriteValue(Utf8JsonWriter w, DeviceField f)
    {
        switch (f.Kind)
        {
            case FieldKind.Bool:
                w.WriteBooleanValue(f.Integer != 0);
                break;
            case FieldKind.Integer:
                if (f.Signed)
                {
                    w.WriteNumberValue(f.SignedInteger);
                }
                else
                {
                    w.WriteNumberValue(f.Integer);
                }

                break;
            case FieldKind.Bytes:
                if (f.Bytes is null)
                {
                    w.WriteNullValue();
                }
                else
                {
                    w.WriteStringValue(Convert.ToHexStringLower(f.Bytes));
                }

                break;
            case FieldKind.Struct:
                w.WriteStartObject();
                w.WriteString(VmsdProperty, f.Struct!.VmsdName);
                w.WriteNumber(VersionProperty, f.Struct.Version);
                WriteFieldsAndSubsections(w, f.Struct);
                w.WriteEndObject();
                break;
            case FieldKind.Array:
                w.WriteStartArray();
                foreach (DeviceField e in f.Elements!)
                {
                    WriteValue(w, e);
                }

                w.WriteEndArray();
                break;
        }
    }
}
