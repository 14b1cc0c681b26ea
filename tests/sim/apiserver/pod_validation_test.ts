/** Pod-spec validation of the fake API server: container ports as kube-apiserver checks them. */

import { assertEquals } from "../../_assert.ts";
import { podSpecErrors, portNameErrors } from "./_pod_validation.ts";

Deno.test("portNameErrors() gives IsValidPortName's messages, one per rule broken", () => {
  for (const good of ["http", "vif-http", "vif2-http", "h2c", "a1-b2-c3", "vif-metrics-exp"]) {
    assertEquals(portNameErrors(good), [], good);
  }
  assertEquals(portNameErrors("metrics-exporter"), ["must be no more than 15 characters"]);
  assertEquals(portNameErrors("HTTP"), [
    "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
    "must contain at least one letter (a-z)",
  ]);
  assertEquals(portNameErrors("8080"), ["must contain at least one letter (a-z)"]);
  assertEquals(portNameErrors("a--b"), ["must not contain consecutive hyphens"]);
  assertEquals(portNameErrors("-http"), ["must not begin or end with a hyphen"]);
});

Deno.test("podSpecErrors() checks container ports: names valid and unique in a container, numbers in range", () => {
  const errors = podSpecErrors({
    containers: [
      {
        name: "web",
        image: "nginx",
        ports: [
          { name: "http", containerPort: 80 },
          { name: "http", containerPort: 81 },
          { name: "Admin", containerPort: 70000 },
          { containerPort: 0 },
        ],
      },
      // Another container may use the same name (kube-apiserver only warns).
      { name: "agent", image: "vif", ports: [{ name: "http", containerPort: 9900 }] },
    ],
  }, "spec.template.spec");
  assertEquals(errors, [
    {
      type: "FieldValueDuplicate",
      field: "spec.template.spec.containers[0].ports[1].name",
      value: '"http"',
    },
    {
      type: "FieldValueInvalid",
      field: "spec.template.spec.containers[0].ports[2].name",
      value: '"Admin"',
      detail: "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
    },
    {
      type: "FieldValueInvalid",
      field: "spec.template.spec.containers[0].ports[2].containerPort",
      value: "70000",
      detail: "must be between 1 and 65535, inclusive",
    },
    {
      type: "FieldValueRequired",
      field: "spec.template.spec.containers[0].ports[3].containerPort",
    },
  ]);
});
