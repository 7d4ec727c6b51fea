using System.Xml;

namespace VmState.Machine;

/// <summary>What the toolkit reads from a libvirt domain XML kept as metadata (<see cref="MachineOrigin.LibvirtDomainXml"/>).</summary>
public static class LibvirtDomainDescription
{
    /// <summary>The domain's name and UUID from libvirt domain XML; nulls when the XML does not say or does not parse.</summary>
    public static (string? Name, string? Uuid) NameAndUuid(string domainXml)
    {
        ArgumentNullException.ThrowIfNull(domainXml);
        if (domainXml.Length == 0)
        {
            return (null, null);
        }

        try
        {
            var settings = new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null, MaxCharactersInDocument = domainXml.Length };
            using var text = new StringReader(domainXml);
            using var reader = XmlReader.Create(text, settings);
            string? name = null;
            string? uuid = null;
            reader.MoveToContent();
            if (reader.NodeType != XmlNodeType.Element || reader.Name != "domain")
            {
                return (null, null);
            }

            // Only the root's own children: <name> and <uuid> of nested elements (devices) are not the domain's.
            int depth = reader.Depth + 1;
            while (reader.Read())
            {
                if (reader.NodeType == XmlNodeType.Element && reader.Depth == depth)
                {
                    if (reader.Name == "name" && name is null)
                    {
                        name = reader.ReadElementContentAsString().Trim();
                        continue;
                    }

                    if (reader.Name == "uuid" && uuid is null)
                    {
                        uuid = reader.ReadElementContentAsString().Trim();
                        continue;
                    }
                }
            }

            return (name, uuid);
        }
        catch (XmlException)
        {
            return (null, null);
        }
    }
}
