using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using VmState.IO;
using VmState.Machine;

namespace VmState.Formats.Migration;

/// <summary>
/// Splits a device section body into fields using its VM description (QEMU 7.2 <c>migration/vmstate.c</c>
/// <c>vmstate_save_state_v</c>: fields in order, then subsections as <c>0x05 str8 name be32 version body</c>).
/// </summary>
internal static class DeviceSectionDecoder
{
    /// <summary>Fields larger than this keep only their offset, not a copy of their bytes.</summary>
    public const int MaxCopiedFieldBytes = 16 * 1024 * 1024;

    private const byte SubsectionMarker = 0x05;

    /// <summary>Decodes one vmsd instance (fields, then the described subsections) at the cursor.</summary>
    /// <remarks>
    /// Bounded by <see cref="ReaderLimits.Default"/> and the end of the input; a stream reader passes one
    /// <see cref="DeviceDecodeBudget"/> for all its sections instead.
    /// </remarks>
    public static VmsdState Decode(SourceCursor cursor, VmsdDescription vmsd, string path) =>
        Decode(cursor, vmsd, path, new DeviceDecodeBudget(ReaderLimits.Default, cursor.Length));

    /// <summary>
    /// Decodes one vmsd instance at the cursor, charging every field to <paramref name="budget"/> before it is
    /// allocated: counts and sizes come from the (untrusted) VM description, so they are checked against the bytes
    /// left before <see cref="DeviceDecodeBudget.End"/> and the budget's field counts first.
    /// </summary>
    public static VmsdState Decode(SourceCursor cursor, VmsdDescription vmsd, string path, DeviceDecodeBudget budget) =>
        Decode(cursor, vmsd, new FieldPath(null, path, '\0', -1), budget);

    private static VmsdState Decode(SourceCursor cursor, VmsdDescription vmsd, FieldPath path, DeviceDecodeBudget budget)
    {
        long start = cursor.Position;
        var fields = new List<DeviceField>(vmsd.Fields.Count);
        foreach (FieldDescription fd in vmsd.Fields)
        {
            fields.Add(DecodeField(cursor, fd, new FieldPath(path, fd.Name, '.', -1), budget));
        }

        var subsections = new List<VmsdState>(vmsd.Subsections.Count);
        foreach (VmsdDescription sub in vmsd.Subsections)
        {
            long subStart = cursor.Position;
            string structure = $"subsection {sub.VmsdName} of {path}";
            byte marker = cursor.ReadU8(structure);
            if (marker != SubsectionMarker)
            {
                throw new VmStateFormatException(subStart, structure, $"expected the subsection marker 0x05, found 0x{marker:x2}");
            }

            string name = cursor.ReadStr8(structure);
            if (name != sub.VmsdName)
            {
                throw new VmStateFormatException(subStart, structure, $"expected subsection \"{sub.VmsdName}\", found \"{name}\"");
            }

            int version = (int)cursor.ReadBe32(structure);
            VmsdState body = Decode(cursor, sub with { Version = version }, new FieldPath(path, name, '/', -1), budget);
            subsections.Add(new VmsdState(name, version, subStart, body.Fields, body.Subsections));
        }

        return new VmsdState(vmsd.VmsdName, vmsd.Version, start, fields, subsections);
    }

    private static DeviceField DecodeField(SourceCursor cursor, FieldDescription fd, FieldPath path, DeviceDecodeBudget budget)
    {
        if (fd.ArrayLength is int n)
        {
            long start = cursor.Position;
            string structure = $"field {path} ({n} x {fd.Type} of {fd.Size} bytes)";

            // QEMU 7.2 vmstate.c: a compressed array ("array_len") is n elements of the first element's size, so
            // the whole field must fit before the end of the device data; checked before anything is allocated.
            long left = budget.RemainingFrom(start);
            if (fd.TotalSize > left)
            {
                throw new VmStateFormatException(start, structure,
                    $"the VM description gives {n} x {fd.Size} = {fd.TotalSize} bytes but only {left} bytes of device data are left before offset {budget.End}");
            }

            // The elements, then the array's own object (which is not an empty element, whatever its size).
            budget.Charge(n, fd.Size, start, structure);
            budget.Charge(1, int.MaxValue, start, structure);
            var elements = new DeviceField[n];
            for (int i = 0; i < n; i++)
            {
                elements[i] = DecodeElement(cursor, fd, new FieldPath(path, null, '[', i), budget);
            }

            return new DeviceField(fd.Name, fd.Type, FieldKind.Array, start, checked((int)(cursor.Position - start)))
            {
                Elements = elements,
            };
        }

        budget.Charge(1, fd.Size, cursor.Position, budget.CanCharge(1, fd.Size) ? string.Empty : $"field {path}");
        return DecodeElement(cursor, fd, path, budget);
    }

    private static DeviceField DecodeElement(SourceCursor cursor, FieldDescription fd, FieldPath path, DeviceDecodeBudget budget)
    {
        long start = cursor.Position;

        // The path and this text are built only for an error: a device's arrays can hold thousands of elements.
        string Structure() => $"field {path} ({fd.Type}, {fd.Size} bytes)";
        if (fd.Size > budget.RemainingFrom(start))
        {
            throw new VmStateFormatException(start, Structure(),
                $"the VM description gives {fd.Size} bytes but only {budget.RemainingFrom(start)} bytes of device data are left before offset {budget.End}");
        }

        if (fd.Struct is not null)
        {
            VmsdState nested = Decode(cursor, fd.Struct, path, budget);
            long consumed = cursor.Position - start;
            if (consumed != fd.Size)
            {
                throw new VmStateFormatException(start, Structure(), $"the VM description gives {fd.Size} bytes but its fields and subsections take {consumed}");
            }

            return new DeviceField(fd.Name, fd.Type, FieldKind.Struct, start, fd.Size) { Struct = nested, Index = fd.Index };
        }

        // The bytes are there (checked above against the budget, whose end is within the input); only an input that
        // shrank while being read fails below, and that error names the field without its path.
        string structure = fd.Size <= cursor.Remaining ? fd.Name : Structure();
        if (IsInteger(fd.Type, fd.Size, out bool signed))
        {
            ReadOnlySpan<byte> b = cursor.Take(fd.Size, structure);
            ulong value = fd.Size switch
            {
                1 => b[0],
                2 => BinaryPrimitives.ReadUInt16BigEndian(b),
                4 => BinaryPrimitives.ReadUInt32BigEndian(b),
                _ => BinaryPrimitives.ReadUInt64BigEndian(b),
            };
            FieldKind kind = fd.Type == "bool" ? FieldKind.Bool : FieldKind.Integer;
            return new DeviceField(fd.Name, fd.Type, kind, start, fd.Size) { Integer = value, Signed = signed, Index = fd.Index };
        }

        byte[]? bytes = null;
        if (fd.Size <= MaxCopiedFieldBytes)
        {
            bytes = cursor.ReadBytes(fd.Size, structure);
        }
        else
        {
            cursor.Skip(fd.Size, structure);
        }

        return new DeviceField(fd.Name, fd.Type, FieldKind.Bytes, start, fd.Size) { Bytes = bytes, Index = fd.Index };
    }

    /// <summary>True for QEMU VMStateInfo names that are big-endian integers of 1, 2, 4 or 8 bytes.</summary>
    public static bool IsInteger(string type, int size, out bool signed)
    {
        signed = false;
        if (size is not (1 or 2 or 4 or 8))
        {
            return false;
        }

        switch (type)
        {
            case "bool":
                return size == 1;
            case "timer":
                signed = true;
                return size == 8;
            case "int32 le":
                // "le" is a less-or-equal check on load, not little-endian (QEMU 7.2 vmstate-types.c).
                signed = true;
                return true;
        }

        string baseType = type.EndsWith(" equal", StringComparison.Ordinal) ? type[..^6] : type;
        switch (baseType)
        {
            case "int8" or "int16" or "int32" or "int64":
                signed = true;
                return true;
            case "uint8" or "uint16" or "uint32" or "uint64":
                return true;
            default:
                return false;
        }
    }

    /// <summary>
    /// Where a field is in a device's state, as error messages name it (<c>cpu.env.regs[3]</c>): built into text only
    /// when an error needs it.
    /// </summary>
    private sealed class FieldPath(FieldPath? parent, string? name, char separator, int index)
    {
        public override string ToString()
        {
            var text = new StringBuilder();
            Append(text);
            return text.ToString();
        }

        private void Append(StringBuilder text)
        {
            parent?.Append(text);
            if (separator == '[')
            {
                text.Append('[').Append(index.ToString(CultureInfo.InvariantCulture)).Append(']');
                return;
            }

            if (parent is not null)
            {
                text.Append(separator);
            }

            text.Append(name);
        }
    }
}
