using VmState.IO;

namespace VmState.Formats.Migration;

/// <summary>
/// What the device sections of one stream may still claim while <see cref="DeviceSectionDecoder"/> follows the VM
/// description: the byte where device data must end, and how many field objects (in all, and of 0 bytes) may
/// still be created. Shared by all sections of a stream, so a hostile description can't multiply its cost by
/// repeating a section.
/// </summary>
internal sealed class DeviceDecodeBudget
{
    private int _fieldsLeft;
    private int _emptyLeft;

    /// <summary>Creates a budget from <paramref name="limits"/>; device data must end at or before <paramref name="end"/>.</summary>
    public DeviceDecodeBudget(ReaderLimits limits, long end)
    {
        Limits = limits;
        End = end;
        _fieldsLeft = limits.MaxDecodedFields;
        _emptyLeft = limits.MaxEmptyElements;
    }

    /// <summary>The limits this budget was made from.</summary>
    public ReaderLimits Limits { get; }

    /// <summary>
    /// The offset device data can't pass: the EOF byte before the VM description (QEMU 7.2
    /// <c>qemu_savevm_state_complete_precopy_non_iterable</c> writes every device section, then EOF, then the
    /// description), or the end of the input when there is no description.
    /// </summary>
    public long End { get; }

    /// <summary>Bytes from <paramref name="position"/> to <see cref="End"/>.</summary>
    public long RemainingFrom(long position) => Math.Max(0, End - position);

    /// <summary>Whether <see cref="Charge"/> of these fields would succeed (so its error text need not be built).</summary>
    public bool CanCharge(long count, int elementSize) => (elementSize != 0 || count <= _emptyLeft) && count <= _fieldsLeft;

    /// <summary>
    /// Charges <paramref name="count"/> field objects of <paramref name="elementSize"/> bytes each (0: they also
    /// count as empty elements), before they are created; throws naming <paramref name="structure"/> at <paramref name="offset"/> when the budget is spent.
    /// </summary>
    public void Charge(long count, int elementSize, long offset, string structure)
    {
        if (elementSize == 0)
        {
            if (count > _emptyLeft)
            {
                throw new VmStateFormatException(offset, structure,
                    $"the VM description gives {count} elements of 0 bytes here ({Limits.MaxEmptyElements - _emptyLeft} before), more than the {Limits.MaxEmptyElements} a stream may have (ReaderLimits.MaxEmptyElements); 0-byte elements carry no data, so nothing else bounds them");
            }

            _emptyLeft -= (int)count;
        }

        if (count > _fieldsLeft)
        {
            throw new VmStateFormatException(offset, structure,
                $"the VM description makes the device sections hold more than {Limits.MaxDecodedFields} fields (ReaderLimits.MaxDecodedFields)");
        }

        _fieldsLeft -= (int)count;
    }
}
