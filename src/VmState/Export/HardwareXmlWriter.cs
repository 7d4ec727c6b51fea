using System.Globalization;
using System.Xml;
using VmState.Arch.X86;
using VmState.Machine;

namespace VmState.Export;

/// <summary>Writes the same hardware state as <see cref="HardwareJsonWriter"/>, as XML (root element &lt;hardware&gt;).</summary>
public static class HardwareXmlWriter
{
    /// <summary>Writes the document to <paramref name="stream"/>.</summary>
    public static void Write(MachineState machine, Stream stream)
    {
        using XmlWriter w = XmlWriter.Create(stream, new XmlWriterSettings { Indent = true });
        w.WriteStartDocument();
        w.WriteStartElement("hardware");
        w.WriteAttributeString("format", HardwareJsonWriter.FormatId);
        w.WriteStartElement("source");
        w.WriteAttributeString("path", machine.SourcePath);
        w.WriteAttributeString("format", machine.Origin.Description);
        if (machine.MachineType is not null)
        {
            w.WriteAttributeString("machineType", machine.MachineType);
        }

        w.WriteEndElement();
        foreach (string warning in machine.Warnings)
        {
            w.WriteElementString("warning", warning);
        }

        w.WriteStartElement("ramBlocks");
        foreach (RamBlockInfo b in machine.RamBlocks)
        {
            w.WriteStartElement("ramBlock");
            w.WriteAttributeString("name", b.Name);
            w.WriteAttributeString("length", Num(b.Length));
            foreach (BlockMapping m in b.Mappings)
            {
                w.WriteStartElement("mapping");
                w.WriteAttributeString("guestPhysicalAddress", HardwareJsonWriter.Hex(m.GuestPhysicalAddress));
                w.WriteAttributeString("blockOffset", HardwareJsonWriter.Hex(m.BlockOffset));
                w.WriteAttributeString("length", HardwareJsonWriter.Hex(m.Length));
                w.WriteEndElement();
            }

            w.WriteEndElement();
        }

        w.WriteEndElement();
        w.WriteStartElement("cpus");
        foreach (X86CpuState cpu in machine.Cpus)
        {
            w.WriteStartElement("cpu");
            w.WriteAttributeString("index", Num((ulong)cpu.Index));
            // The same registers as hardware.json, in the same order.
            foreach (X86Register r in X86Registers.All)
            {
                if (r.InHardwareFile)
                {
                    Reg(w, r.Name, r.Get(cpu));
                }
            }

            for (int i = 0; i < 6; i++)
            {
                Seg(w, X86CpuState.SegmentNames[i], cpu.Segments[i]);
            }

            Seg(w, "ldt", cpu.Ldt);
            Seg(w, "tr", cpu.Tr);
            Seg(w, "gdt", cpu.Gdt);
            Seg(w, "idt", cpu.Idt);
            w.WriteEndElement();
        }

        w.WriteEndElement();
        w.WriteStartElement("devices");
        foreach (DeviceState d in machine.Devices)
        {
            w.WriteStartElement("device");
            w.WriteAttributeString("id", d.IdStr);
            w.WriteAttributeString("instance", Num((ulong)d.InstanceId));
            w.WriteAttributeString("sectionId", Num((ulong)d.SectionId));
            w.WriteAttributeString("offset", Num((ulong)d.Offset));
            w.WriteAttributeString("length", Num((ulong)d.Length));
            if (d.State is not null)
            {
                w.WriteAttributeString("vmsd", d.State.VmsdName);
                w.WriteAttributeString("version", Num((ulong)d.State.Version));
            }

            foreach ((string k, string v) in d.Decoded)
            {
                w.WriteStartElement("decoded");
                w.WriteAttributeString("name", k);
                w.WriteAttributeString("value", v);
                w.WriteEndElement();
            }

            if (d.State is not null)
            {
                WriteState(w, d.State);
            }

            w.WriteEndElement();
        }

        w.WriteEndElement();
        w.WriteEndElement();
        w.WriteEndDocument();
    }

    private static void WriteState(XmlWriter w, VmsdState s)
    {
        foreach (DeviceField f in s.Fields)
        {
            WriteField(w, f);
        }

        foreach (VmsdState sub in s.Subsections)
        {
            w.WriteStartElement("subsection");
            w.WriteAttributeString("name", sub.VmsdName);
            w.WriteAttributeString("version", Num((ulong)sub.Version));
            w.WriteAttributeString("offset", Num((ulong)sub.Offset));
            WriteState(w, sub);
            w.WriteEndElement();
        }
    }

    private static void WriteField(XmlWriter w, DeviceField f)
    {
        w.WriteStartElement("field");
        w.WriteAttributeString("name", f.Name);
        w.WriteAttributeString("type", f.Type);
        w.WriteAttributeString("offset", Num((ulong)f.Offset));
        w.WriteAttributeString("size", Num((ulong)f.Size));
        switch (f.Kind)
        {
            case FieldKind.Bool:
                w.WriteAttributeString("value", f.Integer != 0 ? "true" : "false");
                break;
            case FieldKind.Integer:
                w.WriteAttributeString("value", f.Signed ? f.SignedInteger.ToString(CultureInfo.InvariantCulture) : Num(f.Integer));
                break;
            case FieldKind.Bytes:
                if (f.Bytes is not null)
                {
                    w.WriteAttributeString("value", Convert.ToHexStringLower(f.Bytes));
                }

                break;
            case FieldKind.Struct:
                w.WriteAttributeString("vmsd", f.Struct!.VmsdName);
                WriteState(w, f.Struct);
                break;
            case FieldKind.Array:
                foreach (DeviceField e in f.Elements!)
                {
                    WriteField(w, e);
                }

                break;
        }

        w.WriteEndElement();
    }

    private static void Reg(XmlWriter w, string name, ulong value)
    {
        w.WriteStartElement("register");
        w.WriteAttributeString("name", name);
        w.WriteAttributeString("value", HardwareJsonWriter.Hex(value));
        w.WriteEndElement();
    }

    private static void Seg(XmlWriter w, string name, X86Segment s)
    {
        w.WriteStartElement("segment");
        w.WriteAttributeString("name", name);
        w.WriteAttributeString("selector", HardwareJsonWriter.Hex(s.Selector));
        w.WriteAttributeString("base", HardwareJsonWriter.Hex(s.Base));
        w.WriteAttributeString("limit", HardwareJsonWriter.Hex(s.Limit));
        w.WriteAttributeString("flags", HardwareJsonWriter.Hex(s.Flags));
        w.WriteEndElement();
    }

    private static string Num(ulong v) => v.ToString(CultureInfo.InvariantCulture);
}
