global using Microsoft.VisualStudio.TestTools.UnitTesting;
global using OnnxLora.Testing;
